"""The Iceberg table Glue's CreateTable makes from `OpenTableFormatInput.IcebergInput`: its
first metadata file (built with pyiceberg) and the TableInput the catalog then holds.

What Glue checks is checked here, in InvalidInputException's words: MetadataOperation is
CREATE, the format version is 1 or 2 (pyiceberg writes no other), there is an S3 location
(CreateIcebergTableInput's, else the StorageDescriptor's), each field's type is an Iceberg
type (the primitives, or a nested struct/list/map in Iceberg's JSON form), ids are unique,
the identifier fields are required primitives, and each partition and sort field has a
source field its transform applies to. The schema, partition spec and write order keep
the ids they were given. Without CreateIcebergTableInput the schema is the
StorageDescriptor's Columns (then the PartitionKeys, as columns) in Hive type names, ids
given in order, unpartitioned.

The table registered carries `table_type=ICEBERG`, `metadata_location` and the schema's
columns in Glue's type names (each with the `iceberg.field.*` parameters Iceberg's
catalogs write); it has no Hive PartitionKeys (the partitioning is the metadata's).
"""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema, assign_fresh_schema_ids
from pyiceberg.table.metadata import TableMetadata, TableMetadataV1, TableMetadataV2
from pyiceberg.table.sorting import (
    UNSORTED_SORT_ORDER,
    NullOrder,
    SortDirection,
    SortField,
    SortOrder,
)
from pyiceberg.transforms import IdentityTransform, parse_transform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FixedType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
    TimestampNanoType,
    TimestampType,
    TimestamptzNanoType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from dataplatform.runtime.local.services.base import AwsError

FORMAT_VERSIONS = (1, 2)  # pyiceberg 0.12 does not write version 3
DEFAULT_FORMAT_VERSION = 2
PARTITION_FIELD_ID_START = 1000
S3_SCHEMES = ("s3", "s3a", "s3n")

_PRIMITIVES: dict[str, IcebergType] = {
    "boolean": BooleanType(),
    "int": IntegerType(),
    "long": LongType(),
    "float": FloatType(),
    "double": DoubleType(),
    "date": DateType(),
    "time": TimeType(),
    "timestamp": TimestampType(),
    "timestamptz": TimestamptzType(),
    "string": StringType(),
    "uuid": UUIDType(),
    "binary": BinaryType(),
}
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_FIXED = re.compile(r"fixed\[\s*(\d+)\s*\]")
_TRANSFORM = re.compile(r"identity|void|year|month|day|hour|bucket\[\d+\]|truncate\[\d+\]")
TYPE_NAMES = ", ".join([*_PRIMITIVES, "decimal(p,s)", "fixed[n]"])

# Glue's (Hive's) names of the Iceberg types, as Iceberg's catalogs write them
_GLUE_TYPES: dict[type, str] = {
    BooleanType: "boolean",
    IntegerType: "int",
    LongType: "bigint",
    FloatType: "float",
    DoubleType: "double",
    DateType: "date",
    TimeType: "string",
    StringType: "string",
    UUIDType: "string",
    TimestampType: "timestamp",
    TimestamptzType: "timestamp",
    TimestampNanoType: "timestamp",
    TimestamptzNanoType: "timestamp",
    FixedType: "binary",
    BinaryType: "binary",
}
# and back: a Hive type name to the Iceberg type (for tables made from Columns)
_HIVE_PRIMITIVES: dict[str, IcebergType] = {
    "boolean": BooleanType(),
    "tinyint": IntegerType(),
    "smallint": IntegerType(),
    "int": IntegerType(),
    "integer": IntegerType(),
    "bigint": LongType(),
    "float": FloatType(),
    "double": DoubleType(),
    "date": DateType(),
    "timestamp": TimestampType(),
    "string": StringType(),
    "char": StringType(),
    "varchar": StringType(),
    "binary": BinaryType(),
}


def invalid(message: str) -> AwsError:
    return AwsError("InvalidInputException", message)


@dataclass(frozen=True)
class NewTable:
    """What CreateTable makes: the metadata file (where, and its JSON) and the TableInput
    the catalog is given."""

    metadata: TableMetadata
    metadata_location: str
    bucket: str
    key: str
    table_input: dict[str, Any]

    def metadata_json(self) -> bytes:
        # as pyiceberg's ToOutputFile.table_metadata writes it (uncompressed)
        return self.metadata.model_dump_json(exclude_none=True).encode()


def new_table(iceberg_input: dict[str, Any], table_input: dict[str, Any]) -> NewTable:
    """The Iceberg table of a CreateTable request (its IcebergInput and TableInput, with
    the table's Name); AwsError InvalidInputException for what Glue refuses."""
    operation = iceberg_input.get("MetadataOperation")
    if operation != "CREATE":
        raise invalid(f"IcebergInput.MetadataOperation must be CREATE, not {operation!r}")
    version_text = str(iceberg_input.get("Version") or DEFAULT_FORMAT_VERSION)
    if not version_text.isdigit() or int(version_text) not in FORMAT_VERSIONS:
        raise invalid(
            f"IcebergInput.Version {version_text!r} is not an Iceberg format version "
            f"({', '.join(map(str, FORMAT_VERSIONS))})"
        )
    version = int(version_text)
    create = iceberg_input.get("CreateIcebergTableInput")
    storage = table_input.get("StorageDescriptor") or {}
    location = ((create or {}).get("Location") or storage.get("Location") or "").rstrip("/")
    if not location:
        raise invalid(
            "An Iceberg table needs a location: CreateIcebergTableInput.Location or "
            "TableInput.StorageDescriptor.Location"
        )
    where = urlparse(location)
    if where.scheme not in S3_SCHEMES or not where.netloc:
        raise invalid(f"The Iceberg table's location {location!r} is not an S3 location")

    if create is not None:
        schema = _schema(create.get("Schema"))
        spec = _partition_spec(create.get("PartitionSpec"), schema)
        order = _sort_order(create.get("WriteOrder"), schema)
        properties = {str(k): str(v) for k, v in (create.get("Properties") or {}).items()}
    else:
        schema = _schema_from_columns(
            [*(storage.get("Columns") or []), *(table_input.get("PartitionKeys") or [])]
        )
        spec, order, properties = PartitionSpec(spec_id=0), UNSORTED_SORT_ORDER, {}
    properties.pop("format-version", None)  # the metadata's own field, not a property
    try:
        schema.check_format_version_compatibility(version)
    except ValueError as exc:
        raise invalid(f"Schema: {exc}") from None
    metadata = _metadata(version, schema, spec, order, location, properties)

    metadata_location = f"{location}/metadata/00000-{uuid.uuid4()}.metadata.json"
    key = urlparse(metadata_location).path.lstrip("/")
    registered = {k: v for k, v in table_input.items() if k != "PartitionKeys"}
    registered["TableType"] = table_input.get("TableType") or "EXTERNAL_TABLE"
    registered["Parameters"] = {
        **(table_input.get("Parameters") or {}),
        "table_type": "ICEBERG",
        "metadata_location": metadata_location,
    }
    registered["StorageDescriptor"] = {
        **storage,
        "Columns": glue_columns(schema),
        "Location": location,
    }
    return NewTable(metadata, metadata_location, where.netloc, key, registered)


# ----------------------------------------------------------------------------- the schema
def _schema(given: dict[str, Any] | None) -> Schema:
    if not given or not given.get("Fields"):
        raise invalid("CreateIcebergTableInput.Schema needs Fields")
    if given.get("Type", "struct") != "struct":
        raise invalid(f"Schema.Type must be struct, not {given.get('Type')!r}")
    fields = [_field(f) for f in given["Fields"]]
    names = [f.name for f in fields]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise invalid(f"Schema: field name(s) given more than once: {', '.join(twice)}")
    ids = [i for f in fields for i in _ids(f)]
    twice_ids = sorted({i for i in ids if ids.count(i) > 1})
    if twice_ids:
        raise invalid(f"Schema: field id(s) given more than once: {twice_ids}")
    if any(i <= 0 for i in ids):
        raise invalid(f"Schema: field ids must be positive: {sorted(i for i in ids if i <= 0)}")
    identifiers = list(given.get("IdentifierFieldIds") or [])
    unknown = [i for i in identifiers if i not in ids]
    if unknown:
        raise invalid(f"Schema.IdentifierFieldIds: {unknown} not field ids of the schema")
    try:
        return Schema(
            *fields, schema_id=int(given.get("SchemaId") or 0), identifier_field_ids=identifiers
        )
    except ValueError as exc:  # pyiceberg's checks of the identifier fields
        raise invalid(f"Schema: {exc}") from None


def _field(given: dict[str, Any]) -> NestedField:
    name, field_id = given.get("Name"), given.get("Id")
    label = f"field {name!r} (id {field_id})"
    if not name or not isinstance(field_id, int):
        raise invalid(f"Schema: each field needs a Name and an integer Id ({label})")
    kind = given.get("Type")
    if isinstance(kind, str):
        field_type = _primitive(kind, label)
    elif isinstance(kind, dict):  # a nested type, in Iceberg's JSON form
        try:
            field_type = NestedField.model_validate(
                {"id": field_id, "name": name, "type": kind, "required": False}
            ).field_type
        except ValueError as exc:
            raise invalid(f"Schema: {label} has an invalid nested type: {exc}") from None
    else:
        raise invalid(f"Schema: {label} has no Type ({TYPE_NAMES}, or a struct, list or map)")
    extra: dict[str, Any] = {}
    for key, alias in (("InitialDefault", "initial-default"), ("WriteDefault", "write-default")):
        if key in given:
            extra[alias] = given[key]
    try:
        return NestedField(
            field_id=field_id,
            name=name,
            field_type=field_type,
            required=bool(given.get("Required", False)),
            doc=given.get("Doc"),
            **extra,
        )
    except ValueError as exc:
        raise invalid(f"Schema: {label}: {exc}") from None


def _primitive(text: str, label: str) -> IcebergType:
    name = text.strip().lower()
    if name in _PRIMITIVES:
        return _PRIMITIVES[name]
    decimal = _DECIMAL.fullmatch(name)
    if decimal:
        precision, scale = int(decimal.group(1)), int(decimal.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise invalid(
                f"Schema: {label} has type {text!r}: a decimal's precision is 1 to 38 and "
                "its scale at most its precision"
            )
        return DecimalType(precision, scale)
    fixed = _FIXED.fullmatch(name)
    if fixed and int(fixed.group(1)) > 0:
        return FixedType(int(fixed.group(1)))
    raise invalid(f"Schema: {label} has type {text!r}, not an Iceberg type ({TYPE_NAMES})")


def _ids(field: NestedField) -> list[int]:
    """The field's id and those of every field nested in it."""
    found = [field.field_id]
    kind = field.field_type
    if isinstance(kind, StructType):
        nested = list(kind.fields)
    elif isinstance(kind, ListType):
        nested = [kind.element_field]
    elif isinstance(kind, MapType):
        nested = [kind.key_field, kind.value_field]
    else:
        nested = []
    for inner in nested:
        found.extend(_ids(inner))
    return found


# ------------------------------------------------------------ partitioning and write order
def _transform(text: Any, where: str):
    name = str(text or "").strip().lower()
    if not _TRANSFORM.fullmatch(name):
        raise invalid(
            f"{where}: transform {text!r} is not an Iceberg transform (identity, bucket[n], "
            "truncate[w], year, month, day, hour, void)"
        )
    return parse_transform(name)


def _source(schema: Schema, source_id: Any, where: str) -> NestedField:
    try:
        return schema.find_field(int(source_id))
    except (TypeError, ValueError):
        raise invalid(f"{where}: source id {source_id!r} is not a field of the schema") from None


def _partition_spec(given: dict[str, Any] | None, schema: Schema) -> PartitionSpec:
    given = given or {}
    fields: list[PartitionField] = []
    columns = {f.name for f in schema.columns}
    for i, entry in enumerate(given.get("Fields") or []):
        name = entry.get("Name")
        where = f"PartitionSpec field {name!r}"
        if not name:
            raise invalid("PartitionSpec: each field needs a Name")
        source = _source(schema, entry.get("SourceId"), where)
        transform = _transform(entry.get("Transform"), where)
        if not transform.can_transform(source.field_type):
            raise invalid(
                f"{where}: transform {transform} cannot apply to {source.name} "
                f"(type {source.field_type})"
            )
        if name in columns and not (
            isinstance(transform, IdentityTransform) and name == source.name
        ):
            raise invalid(f"{where}: the name is a column of the schema's (not its identity)")
        field_id = entry.get("FieldId")
        fields.append(
            PartitionField(
                source_id=source.field_id,
                field_id=int(field_id) if field_id is not None else PARTITION_FIELD_ID_START + i,
                transform=transform,
                name=name,
            )
        )
    for attribute, what in (("name", "names"), ("field_id", "field ids")):
        values = [getattr(f, attribute) for f in fields]
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            raise invalid(f"PartitionSpec: {what} given more than once: {', '.join(twice)}")
    return PartitionSpec(*fields, spec_id=int(given.get("SpecId") or 0))


def _sort_order(given: dict[str, Any] | None, schema: Schema) -> SortOrder:
    if not given or not given.get("Fields"):
        return UNSORTED_SORT_ORDER
    fields = []
    for entry in given["Fields"]:
        where = f"WriteOrder field (source id {entry.get('SourceId')})"
        source = _source(schema, entry.get("SourceId"), where)
        transform = _transform(entry.get("Transform"), where)
        if not transform.can_transform(source.field_type):
            raise invalid(f"{where}: transform {transform} cannot apply to {source.name}")
        try:
            direction = SortDirection(str(entry.get("Direction")).lower())
            null_order = NullOrder(str(entry.get("NullOrder")).lower())
        except ValueError:
            raise invalid(
                f"{where}: Direction is asc or desc, NullOrder nulls-first or nulls-last"
            ) from None
        fields.append(SortField(source.field_id, transform, direction, null_order))
    order_id = int(given.get("OrderId") or 1)
    if order_id == 0:
        raise invalid("WriteOrder: OrderId 0 is the unsorted order; a sorted one needs another")
    return SortOrder(*fields, order_id=order_id)


def _metadata(
    version: int,
    schema: Schema,
    spec: PartitionSpec,
    order: SortOrder,
    location: str,
    properties: dict[str, str],
) -> TableMetadata:
    """pyiceberg's new_table_metadata, but keeping the ids given (it assigns fresh ones)."""
    common: dict[str, Any] = {
        "location": location,
        "last_column_id": schema.highest_field_id,
        "current_schema_id": schema.schema_id,
        "partition_specs": [spec],
        "default_spec_id": spec.spec_id,
        "sort_orders": [order],
        "default_sort_order_id": order.order_id,
        "properties": properties,
        "last_partition_id": spec.last_assigned_field_id,
        "table_uuid": uuid.uuid4(),
    }
    try:
        if version == 1:
            v1_fields: dict[str, Any] = {
                "partition_spec": [field.model_dump() for field in spec.fields]
            }
            return TableMetadataV1(schema=schema, **v1_fields, **common)
        return TableMetadataV2(schemas=[schema], **common)
    except ValueError as exc:
        raise invalid(f"The Iceberg table's metadata is not valid: {exc}") from None


# ------------------------------------------------------------------ Glue's columns and back
def glue_type(kind: IcebergType) -> str:
    """An Iceberg type in Glue's (Hive's) type names, as Iceberg's catalogs write them."""
    if isinstance(kind, DecimalType):
        return f"decimal({kind.precision},{kind.scale})"
    if isinstance(kind, StructType):
        return f"struct<{','.join(f'{f.name}:{glue_type(f.field_type)}' for f in kind.fields)}>"
    if isinstance(kind, ListType):
        return f"array<{glue_type(kind.element_type)}>"
    if isinstance(kind, MapType):
        return f"map<{glue_type(kind.key_type)},{glue_type(kind.value_type)}>"
    return _GLUE_TYPES.get(type(kind), str(kind))


def glue_columns(schema: Schema) -> list[dict[str, Any]]:
    columns = []
    for field in schema.columns:
        column: dict[str, Any] = {
            "Name": field.name,
            "Type": glue_type(field.field_type),
            "Parameters": {
                "iceberg.field.id": str(field.field_id),
                "iceberg.field.optional": str(field.optional).lower(),
                "iceberg.field.current": "true",
            },
        }
        if field.doc:
            column["Comment"] = field.doc
        columns.append(column)
    return columns


def _schema_from_columns(columns: list[dict[str, Any]]) -> Schema:
    if not columns:
        raise invalid(
            "An Iceberg table needs a schema: CreateIcebergTableInput.Schema or "
            "TableInput.StorageDescriptor.Columns"
        )
    ids = itertools.count(1)
    fields = []
    for column in columns:
        name = column.get("Name")
        if not name:
            raise invalid("StorageDescriptor.Columns: each column needs a Name")
        text = str(column.get("Type") or "")
        try:
            kind = _HiveType(text, ids).parse()
        except ValueError as exc:
            raise invalid(
                f"StorageDescriptor.Columns: column {name!r} has type {text!r}, not one an "
                f"Iceberg table can hold ({exc})"
            ) from None
        fields.append(NestedField(next(ids), name, kind, required=False, doc=column.get("Comment")))
    names = [f.name for f in fields]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise invalid(f"StorageDescriptor.Columns: column(s) given more than once: {twice}")
    return assign_fresh_schema_ids(Schema(*fields))


class _HiveType:
    """A Hive type name (`array<struct<a:int,b:string>>`) as an Iceberg type; its fields'
    ids are placeholders from `ids` (the schema's are assigned afresh)."""

    def __init__(self, text: str, ids: itertools.count):
        self.text, self.at, self.ids = text.strip(), 0, ids

    def parse(self) -> IcebergType:
        kind = self._type()
        if self.at != len(self.text):
            raise ValueError(f"unexpected {self.text[self.at :]!r}")
        return kind

    def _skip(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def _peek(self, token: str) -> bool:
        self._skip()
        return self.text.startswith(token, self.at)

    def _expect(self, token: str) -> None:
        if not self._peek(token):
            raise ValueError(f"{token!r} expected at {self.text[self.at :]!r}")
        self.at += len(token)

    def _word(self, pattern: str = r"[A-Za-z_][A-Za-z0-9_]*") -> str:
        self._skip()
        found = re.compile(pattern).match(self.text, self.at)
        if not found:
            raise ValueError(f"a name expected at {self.text[self.at :]!r}")
        self.at = found.end()
        return found.group(0)

    def _number(self) -> int:
        return int(self._word(r"\d+"))

    def _type(self) -> IcebergType:
        name = self._word().lower()
        if name == "array":
            self._expect("<")
            element = self._type()
            self._expect(">")
            return ListType(next(self.ids), element, element_required=False)
        if name == "map":
            self._expect("<")
            key = self._type()
            self._expect(",")
            value = self._type()
            self._expect(">")
            return MapType(next(self.ids), key, next(self.ids), value, value_required=False)
        if name == "struct":
            self._expect("<")
            fields = []
            while True:
                field_name = self._word(r"[^:<>,\s]+")
                self._expect(":")
                fields.append(NestedField(next(self.ids), field_name, self._type(), required=False))
                if not self._peek(","):
                    break
                self._expect(",")
            self._expect(">")
            return StructType(*fields)
        if name == "decimal":
            if not self._peek("("):
                return DecimalType(10, 0)  # Hive's decimal
            self._expect("(")
            precision = self._number()
            self._expect(",")
            scale = self._number()
            self._expect(")")
            return DecimalType(precision, scale)
        if name in ("char", "varchar") and self._peek("("):
            self._expect("(")
            self._number()
            self._expect(")")
        if name not in _HIVE_PRIMITIVES:
            raise ValueError(f"{name} is not a type of Glue's an Iceberg table can hold")
        return _HIVE_PRIMITIVES[name]
