"""Register a step's Parquet output in the Glue catalog (both EMR steps use this).

`register_table` creates the table, or updates it when it exists, with the columns of a
Spark schema (arrays included) and the output's location (s3a:// written back as s3://,
the catalog's scheme). Unpartitioned Parquet."""

from __future__ import annotations

GLUE_TYPES = {
    "StringType": "string",
    "IntegerType": "int",
    "LongType": "bigint",
    "DoubleType": "double",
    "FloatType": "float",
    "BooleanType": "boolean",
    "DateType": "date",
    "TimestampType": "timestamp",
    "ShortType": "smallint",
    "ByteType": "tinyint",
}


def glue_type(data_type) -> str:
    name = type(data_type).__name__
    if name == "DecimalType":
        return f"decimal({data_type.precision},{data_type.scale})"
    if name == "ArrayType":
        return f"array<{glue_type(data_type.elementType)}>"
    return GLUE_TYPES.get(name, "string")


def register_table(
    glue,
    *,
    database: str,
    name: str,
    location: str,
    schema,
    parameters: dict[str, str] | None = None,
) -> str:
    """Create or update `database.name` (Parquet, unpartitioned); returns "created" or
    "updated"."""
    location = "s3://" + location[len("s3a://") :] if location.startswith("s3a://") else location
    table_input = {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", **(parameters or {})},
        "StorageDescriptor": {
            "Columns": [{"Name": f.name, "Type": glue_type(f.dataType)} for f in schema.fields],
            "Location": location,
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "SerdeInfo": {
                "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
            },
        },
    }
    try:
        glue.get_table(DatabaseName=database, Name=name)
    except glue.exceptions.EntityNotFoundException:
        glue.create_table(DatabaseName=database, TableInput=table_input)
        return "created"
    glue.update_table(DatabaseName=database, TableInput=table_input)
    return "updated"
