"""The Hive formats and SerDes of the catalog's tables, as the local services that read and
write them (the crawler, Athena's CTAS) name them."""

from __future__ import annotations

PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    },
}
TEXT_FORMATS = {
    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
}
RAW_SERDES = {
    "json": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"},
    "csv": {"SerializationLibrary": "org.apache.hadoop.hive.serde2.OpenCSVSerde"},
}
