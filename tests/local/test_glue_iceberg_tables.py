"""Glue's CreateTable with OpenTableFormatInput on the local endpoint makes a real Iceberg
table, as Glue does: its first metadata file in S3 (the bucket's default SSE-KMS on it),
the table registered with table_type ICEBERG, metadata_location and the schema's columns,
so that Iceberg's own GlueCatalog (pyiceberg's here) loads it, appends to it and reads it
back. UpdateTable honours VersionId (Iceberg's optimistic commits), and the deployer's
AWS::Glue::Table applier makes Iceberg tables from the template and leaves existing ones
as they are, saying so. moto alone only sets table_type and writes nothing."""

from __future__ import annotations

import copy
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError
from botocore.model import StructureShape
from pyiceberg.catalog import load_catalog

from dataplatform.runtime.local import server
from dataplatform.runtime.local.deploy import Report
from dataplatform.runtime.local.deploy.model import Pending
from dataplatform.runtime.local.deploy.resources import glue_table

pytestmark = pytest.mark.slow
REGION = "eu-west-1"

# (id, name, Iceberg type, required, Glue's type)
FIELDS = [
    (1, "sale_id", "string", True, "string"),
    (2, "quantity", "int", False, "int"),
    (3, "customer_id", "long", False, "bigint"),
    (4, "price", "double", False, "double"),
    (5, "returned", "boolean", False, "boolean"),
    (6, "sale_date", "date", False, "date"),
    (7, "sold_at", "timestamptz", False, "timestamp"),
    (8, "dt", "string", False, "string"),
]


def iceberg_input(location: str, fields=FIELDS) -> dict:
    return {
        "IcebergInput": {
            "MetadataOperation": "CREATE",
            "Version": "2",
            "CreateIcebergTableInput": {
                "Location": location,
                "Schema": {
                    "SchemaId": 0,
                    "Type": "struct",
                    "Fields": [
                        {"Id": i, "Name": n, "Type": t, "Required": r, "Doc": f"the {n}"}
                        for i, n, t, r, _ in fields
                    ],
                    "IdentifierFieldIds": [1],
                },
                "PartitionSpec": {
                    "SpecId": 0,
                    "Fields": [
                        {"SourceId": 8, "Transform": "identity", "Name": "dt", "FieldId": 1000}
                    ],
                },
                "Properties": {
                    "write.merge.mode": "copy-on-write",
                    "write.format.default": "parquet",
                },
            },
        }
    }


@dataclass
class Lake:
    endpoint: str
    glue: Any
    s3: Any
    bucket: str
    key_arn: str
    database: str
    made: list[str] = field(default_factory=list)

    def location(self, table: str) -> str:
        return f"s3://{self.bucket}/curated/{table}"

    def create(self, table: str, **changes) -> str:
        """An Iceberg table made by CreateTable with the full OpenTableFormatInput."""
        request = {
            "DatabaseName": self.database,
            "TableInput": {
                "Name": table,
                "TableType": "EXTERNAL_TABLE",
                "StorageDescriptor": {"Location": self.location(table), "Columns": []},
                "Parameters": {"classification": "parquet"},
            },
            "OpenTableFormatInput": iceberg_input(self.location(table)),
        }
        request.update(changes)
        self.glue.create_table(**request)
        return table

    def objects(self, table: str) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"curated/{table}/")
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def catalog(self):
        """pyiceberg's GlueCatalog, its Glue and S3 both the local endpoint."""
        properties = {
            "glue.endpoint": self.endpoint,
            "glue.region": REGION,
            "glue.access-key-id": server.ACCESS_KEY,
            "glue.secret-access-key": server.SECRET_KEY,
            "s3.endpoint": self.endpoint,
            "s3.region": REGION,
            "s3.access-key-id": server.ACCESS_KEY,
            "s3.secret-access-key": server.SECRET_KEY,
        }
        return load_catalog("local", type="glue", **properties)


@pytest.fixture(scope="module")
def lake(local_home) -> Lake:
    """A bucket whose default is SSE-KMS with a key of its own, and a database, on the
    session's platform (named afresh: the platform is shared)."""
    info = server.status(local_home)
    assert info is not None

    def client(service: str):
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=info.endpoint,
            region_name=REGION,
            aws_access_key_id=server.ACCESS_KEY,
            aws_secret_access_key=server.SECRET_KEY,
        )

    suffix = uuid.uuid4().hex[:10]
    s3, kms, glue = client("s3"), client("kms"), client("glue")
    key_arn = kms.create_key(Description="the lake's key")["KeyMetadata"]["Arn"]
    bucket = f"dp-iceberg-{suffix}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_arn,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    database = f"iceberg_{suffix}"
    glue.create_database(DatabaseInput={"Name": database})
    return Lake(info.endpoint, glue, s3, bucket, key_arn, database)


def test_create_table_registers_an_iceberg_table_with_its_first_metadata(lake):
    table = lake.create("sales_registered")
    got = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    assert got["Parameters"]["table_type"] == "ICEBERG"
    assert got["Parameters"]["classification"] == "parquet"  # the caller's parameters kept
    metadata_location = got["Parameters"]["metadata_location"]
    assert metadata_location.startswith(f"{lake.location(table)}/metadata/00000-")
    assert metadata_location.endswith(".metadata.json")
    assert got["StorageDescriptor"]["Location"] == lake.location(table)
    columns = got["StorageDescriptor"]["Columns"]
    assert [(c["Name"], c["Type"]) for c in columns] == [(n, g) for _, n, _, _, g in FIELDS]
    assert [c["Parameters"]["iceberg.field.id"] for c in columns] == [str(i) for i, *_ in FIELDS]
    assert columns[0]["Comment"] == "the sale_id"
    assert "PartitionKeys" not in got or got["PartitionKeys"] == []
    # the one object written is that metadata file
    assert lake.objects(table) == [metadata_location.removeprefix(f"s3://{lake.bucket}/")]


def test_pyiceberg_loads_it_appends_through_glue_and_reads_it_back(lake):
    table_name = lake.create("sales_appended")
    catalog = lake.catalog()
    table = catalog.load_table((lake.database, table_name))
    assert table.format_version == 2
    assert [(f.field_id, f.name, str(f.field_type), f.required) for f in table.schema().fields] == [
        (i, n, t, r) for i, n, t, r, _ in FIELDS
    ]
    assert table.schema().identifier_field_ids == [1]
    assert [(f.source_id, f.field_id, str(f.transform), f.name) for f in table.spec().fields] == [
        (8, 1000, "identity", "dt")
    ]
    assert table.properties["write.merge.mode"] == "copy-on-write"
    before = lake.glue.get_table(DatabaseName=lake.database, Name=table_name)["Table"]

    rows = pa.Table.from_pylist(
        [
            {
                "sale_id": f"s{i}",
                "quantity": i,
                "customer_id": 10_000_000_000 + i,
                "price": 9.5 * i,
                "returned": i % 2 == 0,
                "sale_date": date(2026, 3, i),
                "sold_at": datetime(2026, 3, i, 12, 30, tzinfo=UTC),
                "dt": f"2026-03-0{1 + i % 2}",
            }
            for i in range(1, 5)
        ],
        schema=table.schema().as_arrow(),
    )
    table.append(rows)

    assert table.current_snapshot() is not None
    after = lake.glue.get_table(DatabaseName=lake.database, Name=table_name)["Table"]
    assert after["Parameters"]["metadata_location"] != before["Parameters"]["metadata_location"]
    assert (
        after["Parameters"]["previous_metadata_location"]
        == (before["Parameters"]["metadata_location"])
    )
    assert int(after["VersionId"]) > int(before["VersionId"])
    reloaded = lake.catalog().load_table((lake.database, table_name))
    assert reloaded.current_snapshot().snapshot_id == table.current_snapshot().snapshot_id
    read = reloaded.scan().to_arrow().sort_by("sale_id")
    assert read.to_pylist() == rows.sort_by("sale_id").to_pylist()
    # the data files are in the table's partitions
    assert any("/data/dt=2026-03-01/" in k for k in lake.objects(table_name))


def test_a_table_that_exists_is_refused_and_nothing_is_written(lake):
    table = lake.create("sales_twice")
    written = lake.objects(table)
    with pytest.raises(ClientError) as refused:
        lake.create(table)
    assert refused.value.response["Error"]["Code"] == "AlreadyExistsException"
    assert lake.objects(table) == written


def test_a_field_of_no_iceberg_type_is_refused_naming_it(lake):
    fields = [*FIELDS[:3], (4, "price", "varchar(10)", False, "string"), *FIELDS[4:]]
    table = "sales_bad_type"
    with pytest.raises(ClientError) as refused:
        lake.create(table, OpenTableFormatInput=iceberg_input(lake.location(table), fields))
    error = refused.value.response["Error"]
    assert error["Code"] == "InvalidInputException"
    assert "'price'" in error["Message"] and "varchar(10)" in error["Message"]
    with pytest.raises(ClientError) as missing:
        lake.glue.get_table(DatabaseName=lake.database, Name=table)
    assert missing.value.response["Error"]["Code"] == "EntityNotFoundException"
    assert lake.objects(table) == []


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            lambda i: i["IcebergInput"]["CreateIcebergTableInput"]["Schema"].update(
                IdentifierFieldIds=[2]
            ),
            "not a required field",
        ),
        (
            lambda i: i["IcebergInput"]["CreateIcebergTableInput"]["PartitionSpec"]["Fields"][
                0
            ].update(SourceId=99),
            "source id 99",
        ),
        (
            lambda i: i["IcebergInput"]["CreateIcebergTableInput"]["PartitionSpec"]["Fields"][
                0
            ].update(Transform="bucket"),
            "transform 'bucket'",
        ),
        (lambda i: i["IcebergInput"].update(Version="7"), "Version"),
    ],
)
def test_other_input_glue_refuses_is_refused(lake, change, said):
    table = f"sales_refused_{uuid.uuid4().hex[:6]}"
    given = iceberg_input(lake.location(table))
    change(given)
    with pytest.raises(ClientError) as refused:
        lake.create(table, OpenTableFormatInput=given)
    assert refused.value.response["Error"]["Code"] == "InvalidInputException"
    assert said in refused.value.response["Error"]["Message"]
    assert lake.objects(table) == []


def test_without_create_input_the_schema_is_the_columns_unpartitioned(lake):
    table = "events_from_columns"
    columns = [
        {"Name": "event_id", "Type": "string"},
        {"Name": "n", "Type": "bigint"},
        {"Name": "at", "Type": "timestamp"},
        {"Name": "tags", "Type": "array<string>"},
    ]
    lake.glue.create_table(
        DatabaseName=lake.database,
        TableInput={
            "Name": table,
            "StorageDescriptor": {"Location": lake.location(table), "Columns": columns},
        },
        OpenTableFormatInput={"IcebergInput": {"MetadataOperation": "CREATE"}},
    )
    loaded = lake.catalog().load_table((lake.database, table))
    assert [(f.field_id, f.name, str(f.field_type)) for f in loaded.schema().fields] == [
        (1, "event_id", "string"),
        (2, "n", "long"),
        (3, "at", "timestamp"),
        (4, "tags", "list<string>"),
    ]
    assert loaded.spec().is_unpartitioned()
    got = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    assert [(c["Name"], c["Type"]) for c in got["StorageDescriptor"]["Columns"]] == [
        (c["Name"], c["Type"]) for c in columns
    ]


def test_a_table_without_open_table_format_input_is_moto_s_as_before(lake):
    table = "plain_csv"
    lake.glue.create_table(
        DatabaseName=lake.database,
        TableInput={
            "Name": table,
            "StorageDescriptor": {
                "Location": lake.location(table),
                "Columns": [{"Name": "a", "Type": "string"}],
            },
        },
    )
    got = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    assert "table_type" not in (got.get("Parameters") or {})
    assert lake.objects(table) == []


def _table_input(table: dict) -> dict:
    """GetTable's answer as UpdateTable's TableInput (its members only)."""
    shape = boto3.client("glue", region_name=REGION).meta.service_model.shape_for("TableInput")
    assert isinstance(shape, StructureShape)
    return {k: v for k, v in table.items() if k in shape.members}


def test_update_table_with_a_stale_version_id_is_a_concurrent_modification(lake):
    table = lake.create("sales_versions")
    first = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    changed = _table_input(first)
    changed["Parameters"] = {**changed["Parameters"], "note": "first commit"}
    lake.glue.update_table(
        DatabaseName=lake.database, TableInput=changed, VersionId=first["VersionId"]
    )
    second = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    assert second["VersionId"] != first["VersionId"]
    assert second["Parameters"]["note"] == "first commit"

    late = _table_input(first)
    late["Parameters"] = {**late["Parameters"], "note": "the late commit"}
    with pytest.raises(ClientError) as refused:
        lake.glue.update_table(
            DatabaseName=lake.database, TableInput=late, VersionId=first["VersionId"]
        )
    assert refused.value.response["Error"]["Code"] == "ConcurrentModificationException"
    now = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    assert now["Parameters"]["note"] == "first commit"
    assert now["VersionId"] == second["VersionId"]
    # without a VersionId an update is applied, as Glue applies it
    lake.glue.update_table(DatabaseName=lake.database, TableInput=late)
    final = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    assert final["Parameters"]["note"] == "the late commit"


def test_of_updates_racing_from_one_version_exactly_one_is_applied(lake):
    table = lake.create("sales_race")
    first = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]

    def commit(n: int) -> str:
        changed = _table_input(first)
        changed["Parameters"] = {**changed["Parameters"], "writer": str(n)}
        try:
            lake.glue.update_table(
                DatabaseName=lake.database, TableInput=changed, VersionId=first["VersionId"]
            )
            return "applied"
        except ClientError as exc:
            return exc.response["Error"]["Code"]

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(commit, range(12)))
    assert sorted(answers) == sorted(["applied", *["ConcurrentModificationException"] * 11])
    now = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    assert now["Parameters"]["writer"] == str(answers.index("applied"))


def test_the_metadata_file_has_the_bucket_s_default_sse_kms(lake):
    table = lake.create("sales_encrypted")
    got = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    key = got["Parameters"]["metadata_location"].removeprefix(f"s3://{lake.bucket}/")
    head = lake.s3.head_object(Bucket=lake.bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == lake.key_arn


# ------------------------------------------------------------------------- the deployer
@dataclass
class Deployment:
    """What the applier uses of a deployment (deploy/model.py Context)."""

    glue: Any
    region: str = REGION
    account: str = "123456789012"
    report: Report = field(default_factory=Report)

    def clients(self, service: str) -> Any:
        assert service == "glue"
        return self.glue

    def publish(self, bucket: str, key: str) -> None:
        raise AssertionError("not used")

    def zone(self, name: str) -> str:
        raise AssertionError("not used")


def _template_table(lake: Lake, table: str, columns: list[dict], iceberg: bool) -> dict:
    """An AWS::Glue::Table's properties as the synthesized template has them: CloudFormation
    names CreateIcebergTableInput IcebergTableInput."""
    props: dict = {
        "CatalogId": "123456789012",
        "DatabaseName": lake.database,
        "TableInput": {
            "Name": table,
            "TableType": "EXTERNAL_TABLE",
            "StorageDescriptor": {"Location": lake.location(table), "Columns": columns},
        },
    }
    if iceberg:
        given = copy.deepcopy(iceberg_input(lake.location(table))["IcebergInput"])
        given["IcebergTableInput"] = given.pop("CreateIcebergTableInput")
        props["OpenTableFormatInput"] = {"IcebergInput": given}
    return props


def _pending(props: dict) -> Pending:
    return Pending("dev-catalog", "SalesTable", "AWS::Glue::Table", props, None, {})


def test_the_applier_makes_an_iceberg_table_and_then_leaves_it_saying_so(lake):
    table = "deployed_sales"
    columns = [{"Name": n, "Type": g} for _, n, _, _, g in FIELDS]
    deployment = Deployment(lake.glue)
    out = glue_table(deployment, _pending(_template_table(lake, table, columns, iceberg=True)))
    assert out.physical_id == table
    assert deployment.report.notes == []
    made = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    assert made["Parameters"]["table_type"] == "ICEBERG"
    loaded = lake.catalog().load_table((lake.database, table))
    assert [f.name for f in loaded.schema().fields] == [n for _, n, *_ in FIELDS]
    assert [str(f.transform) for f in loaded.spec().fields] == ["identity"]

    # the template changed (a column fewer): the Iceberg table is left, and that is said
    again = Deployment(lake.glue)
    glue_table(again, _pending(_template_table(lake, table, columns[:-1], iceberg=True)))
    assert again.report.notes == [
        f"dev-catalog/SalesTable (AWS::Glue::Table {lake.database}.{table}): Iceberg table "
        f"{lake.database}.{table} exists; its schema is evolved by the curate job, not "
        "replaced by the template (the template's TableInput is not applied: it would drop "
        "the table's metadata_location)"
    ]
    now = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    assert now["VersionId"] == made["VersionId"]
    assert now["Parameters"] == made["Parameters"]
    assert now["StorageDescriptor"]["Columns"] == made["StorageDescriptor"]["Columns"]


def test_the_applier_updates_a_table_that_is_not_iceberg_to_the_template(lake):
    table = "deployed_raw"
    deployment = Deployment(lake.glue)
    first = [{"Name": "a", "Type": "string"}]
    glue_table(deployment, _pending(_template_table(lake, table, first, iceberg=False)))
    second = [*first, {"Name": "b", "Type": "int"}]
    glue_table(deployment, _pending(_template_table(lake, table, second, iceberg=False)))
    assert deployment.report.notes == []
    got = lake.glue.get_table(DatabaseName=lake.database, Name=table)["Table"]
    assert got["StorageDescriptor"]["Columns"] == second
    assert "table_type" not in (got.get("Parameters") or {})
