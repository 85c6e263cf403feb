"""Apache Iceberg curated tables (a dataset's `table_format: iceberg`): the Spark catalog
settings Glue, EMR and the local platform give the jobs, the table's create-time shape the
CatalogStack declares, the schema evolution the spec asks for, and the MERGE by primary key
the curate job runs instead of overwriting partitions.

Pure where it can be (the settings, `table_shape`, `schema_changes`, `merge_sql`); the two
functions that take a SparkSession (`evolve`, `merge`) only run the SQL these build.

The table: partitioned by identity of the string column `dt` (as the Hive tables are, so the
feature SQL's `dt` filters prune both), copy-on-write for MERGE/UPDATE/DELETE (readers, the
local Athena among them, never need delete files), Parquet with Snappy. Iceberg's field ids
make schema changes metadata-only: a new column reads NULL in old files, a rename keeps the
data, int -> bigint reads old files as bigint.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataplatform.spec import Dataset

# Iceberg's Spark catalog over the Glue Data Catalog, under the name AWS's docs use.
CATALOG = "glue_catalog"
EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
PARTITION_COLUMN = "dt"
PARTITION_FIELD_ID = 1000  # Iceberg numbers partition fields from 1000

ICEBERG_TYPES = {
    "string": "string",
    "int": "int",
    "bigint": "long",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    # Spark's TIMESTAMP is an instant (the jobs run in UTC): Iceberg's timestamptz
    "timestamp": "timestamptz",
}
SPARK_SQL_TYPES = {
    "string": "STRING",
    "int": "INT",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
# The only type changes Iceberg makes without rewriting data, among the spec's types
# (float -> double and wider decimals are the others).
WIDENINGS = {("int", "bigint")}


def is_iceberg_table(parameters: dict[str, str]) -> bool:
    """Glue's mark of an Iceberg table (Iceberg's GlueCatalog, Athena, Glue's
    OpenTableFormatInput): the table parameter `table_type` ICEBERG, in any case."""
    return any(
        k.lower() == "table_type" and str(v).upper() == "ICEBERG" for k, v in parameters.items()
    )


def table_properties(dataset: Dataset) -> dict[str, str]:
    """The table's properties: Iceberg's write settings and Athena's VACUUM retention."""
    m = dataset.maintenance
    return {
        "format-version": "2",
        "write.format.default": "parquet",
        "write.parquet.compression-codec": "snappy",
        "write.merge.mode": "copy-on-write",
        "write.update.mode": "copy-on-write",
        "write.delete.mode": "copy-on-write",
        # Athena's VACUUM reads these two (and the local platform's, alike)
        "vacuum_max_snapshot_age_seconds": str(m.snapshot_retention_days * 86400),
        "vacuum_min_snapshots_to_keep": str(m.min_snapshots_to_keep),
    }


# ----------------------------------------------------------------------------- catalog settings


def catalog_conf(warehouse: str) -> dict[str, str]:
    """The Spark settings that make `glue_catalog` Iceberg's catalog over Glue, as AWS's
    Glue and EMR documentation give them."""
    return {
        "spark.sql.extensions": EXTENSIONS,
        f"spark.sql.catalog.{CATALOG}": "org.apache.iceberg.spark.SparkCatalog",
        f"spark.sql.catalog.{CATALOG}.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog",
        f"spark.sql.catalog.{CATALOG}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"spark.sql.catalog.{CATALOG}.warehouse": warehouse,
    }


def glue_job_arguments(warehouse: str) -> dict[str, str]:
    """A Glue 5 job's arguments for Iceberg: `--datalake-formats iceberg` puts Iceberg on the
    class path, `--conf` (one argument, `k=v --conf k=v ...`, as Glue takes it) configures
    the catalog."""
    conf = catalog_conf(warehouse)
    return {
        "--datalake-formats": "iceberg",
        "--conf": " --conf ".join(f"{k}={v}" for k, v in conf.items()),
    }


def parse_glue_conf(value: str) -> dict[str, str]:
    """Glue's `--conf` argument back into settings (`k=v --conf k=v`)."""
    settings = {}
    for part in value.split(" --conf "):
        part = part.strip()
        if part.startswith("--conf "):
            part = part[len("--conf ") :].strip()
        if "=" in part:
            key, _, setting = part.partition("=")
            settings[key.strip()] = setting.strip()
    return settings


def configure_catalog(spark, warehouse: str) -> None:
    """Set the catalog on a running session where the job's launcher did not (an EMR step
    submitted without them); the static `spark.sql.extensions` is the cluster's."""
    for key, value in catalog_conf(warehouse).items():
        if key == "spark.sql.extensions":
            continue
        if spark.conf.get(key, None) is None:
            spark.conf.set(key, value)


def table_name(database: str, table: str) -> str:
    return f"{CATALOG}.`{database}`.`{table}`"


# ----------------------------------------------------------------------------- the table's shape


def table_shape(dataset: Dataset, location: str) -> dict:
    """Glue's CreateIcebergTableInput for the curated table (field ids 1.. in spec order,
    `dt` last, identity partition on `dt`): what the CatalogStack declares and Glue turns
    into the table's first metadata file."""
    columns = [(c.name, ICEBERG_TYPES[c.type], c.description) for c in dataset.kept_columns]
    columns.append((PARTITION_COLUMN, "string", "day of the event time (UTC), YYYY-MM-DD"))
    fields = [
        {"Id": i, "Name": name, "Type": type_, "Required": False, **({"Doc": doc} if doc else {})}
        for i, (name, type_, doc) in enumerate(columns, start=1)
    ]
    return {
        "Location": location,
        "Schema": {"SchemaId": 0, "Type": "struct", "Fields": fields},
        "PartitionSpec": {
            "SpecId": 0,
            "Fields": [
                {
                    "SourceId": len(fields),
                    "Transform": "identity",
                    "Name": PARTITION_COLUMN,
                    "FieldId": PARTITION_FIELD_ID,
                }
            ],
        },
        "Properties": table_properties(dataset),
    }


def create_table_sql(dataset: Dataset, table: str, location: str) -> str:
    """`table_shape` as Spark SQL (the same columns, partitioning and properties): for a
    catalog without Glue's CreateTable (tests on a plain catalog)."""
    shape = table_shape(dataset, location)
    types = {c.name: SPARK_SQL_TYPES[c.type] for c in dataset.kept_columns}
    types[PARTITION_COLUMN] = "STRING"
    columns = ", ".join(f"`{f['Name']}` {types[f['Name']]}" for f in shape["Schema"]["Fields"])
    properties = ", ".join(f"'{k}'='{v}'" for k, v in shape["Properties"].items())
    return (
        f"CREATE TABLE {table} ({columns}) USING iceberg PARTITIONED BY (`{PARTITION_COLUMN}`) "
        f"LOCATION '{location}' TBLPROPERTIES ({properties})"
    )


# ----------------------------------------------------------------------------- schema evolution


class SchemaChangeRefused(ValueError):
    """The spec asks for a change Iceberg cannot make without rewriting (or losing) data."""


@dataclass(frozen=True)
class TableColumn:
    name: str
    type: str  # the spec's type names (string, int, bigint, double, boolean, date, timestamp)


_SPARK_TO_SPEC = {
    "string": "string",
    "int": "int",
    "integer": "int",
    "bigint": "bigint",
    "long": "bigint",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp_ntz": "timestamp",
}


def spec_type(spark_type: str) -> str:
    """A Spark/Iceberg type name as the spec names it (the name itself if it has none)."""
    return _SPARK_TO_SPEC.get(spark_type.strip().lower(), spark_type.strip().lower())


def schema_changes(current: list[TableColumn], dataset: Dataset, table: str) -> list[str]:
    """Pure: the ALTER TABLE statements that bring the table's schema to the spec's (renames,
    then widenings, then new columns, in spec order), or SchemaChangeRefused naming the spec
    file, the field and the fix."""
    existing = {c.name: c for c in current}
    wanted = {c.name for c in dataset.kept_columns} | {PARTITION_COLUMN}
    renamed_from = {c.renamed_from: c.name for c in dataset.kept_columns if c.renamed_from}
    where = dataset.source_file or f"spec/datasets/{dataset.name}.yaml"
    index = {c.name: i for i, c in enumerate(dataset.columns)}
    renames, widenings, additions = [], [], []
    for column in dataset.kept_columns:
        field = f"columns[{index[column.name]}]"
        found = existing.get(column.name)
        if found is None and column.renamed_from in existing:
            found = existing[column.renamed_from]
            renames.append(f"ALTER TABLE {table} RENAME COLUMN `{found.name}` TO `{column.name}`")
        if found is None:
            additions.append(
                f"ALTER TABLE {table} ADD COLUMN `{column.name}` {SPARK_SQL_TYPES[column.type]}"
            )
            continue
        if found.type == column.type:
            continue
        if (found.type, column.type) in WIDENINGS:
            widenings.append(
                f"ALTER TABLE {table} ALTER COLUMN `{column.name}` TYPE "
                f"{SPARK_SQL_TYPES[column.type]}"
            )
            continue
        raise SchemaChangeRefused(
            f"{where}: {field}.type: column {column.name!r} is {found.type} in the Iceberg "
            f"table {table} and {column.type} in the spec; Iceberg changes a type without "
            f"rewriting data only from int to bigint. Keep type {found.type}, or add a new "
            f"column (e.g. {column.name}_{column.type}) and stop writing this one"
        )
    dropped = [c.name for c in current if c.name not in wanted and c.name not in renamed_from]
    if dropped:
        raise SchemaChangeRefused(
            f"{where}: columns: the Iceberg table {table} has column(s) {dropped} the spec "
            "no longer keeps; the curate job does not remove columns (their data would leave "
            "every later snapshot). Put them back in the spec (without `drop: true`), rename "
            "one with `renamed_from`, or drop it by hand: ALTER TABLE ... DROP COLUMN"
        )
    return renames + widenings + additions


def current_columns(spark, table: str) -> list[TableColumn]:
    return [
        TableColumn(field.name, spec_type(field.dataType.simpleString()))
        for field in spark.table(table).schema.fields
    ]


def evolve(spark, dataset: Dataset, table: str, log=print) -> list[str]:
    """Apply `schema_changes` to the table (each a metadata-only commit); the statements."""
    statements = schema_changes(current_columns(spark, table), dataset, table)
    for statement in statements:
        log(f"curate {dataset.name}: {statement}")
        spark.sql(statement)
    return statements


# ----------------------------------------------------------------------------- MERGE


def _q(name: str) -> str:
    return f"`{name}`"


def _merge_conditions(dataset: Dataset) -> tuple[list[str], str, str]:
    """The table's columns, the ON condition and the "batch row is newer" condition."""
    columns = [c.name for c in dataset.kept_columns] + [PARTITION_COLUMN]
    keys = list(dataset.primary_key)
    same_key = " AND ".join(f"t.{_q(k)} <=> s.{_q(k)}" for k in keys)
    any_null_key = " OR ".join(f"s.{_q(k)} IS NULL" for k in keys)
    same_row = " AND ".join(f"t.{_q(c)} <=> s.{_q(c)}" for c in columns)
    if dataset.event_time:
        e = _q(dataset.event_time)
        newer = f"s.{e} > t.{e} OR (t.{e} IS NULL AND s.{e} IS NOT NULL)"
    else:
        newer = f"NOT ({same_row})"
    return columns, f"({same_key}) AND (NOT ({any_null_key}) OR ({same_row}))", newer


def changes_sql(dataset: Dataset, table: str, source_view: str) -> str:
    """Pure: the batch rows the MERGE would change (no row of that key yet, or the row is
    newer), with `__dp_new` true for the ones it would insert. MERGE is given only these:
    copy-on-write rewrites every data file holding a key the source matches, whatever the
    WHEN condition decides, so a rerun with the whole batch rewrote every file for nothing."""
    _, on, newer = _merge_conditions(dataset)
    return (
        f"SELECT s.*, t.__dp_present IS NULL AS __dp_new FROM {source_view} s "
        f"LEFT JOIN (SELECT *, true AS __dp_present FROM {table}) t ON {on} "
        f"WHERE t.__dp_present IS NULL OR ({newer})"
    )


def merge_sql(dataset: Dataset, table: str, source_view: str) -> str:
    """Pure: MERGE the curated batch (`source_view`) into the table by primary key.

    - a key matches null-safely; a row with a null key column matches only a row equal in
      every column (so a rerun does not insert it twice);
    - a matched row is replaced when the batch's event_time is later (latest event wins; a
      late, older record changes nothing; an equal one keeps the table's row); for datasets
      without an event_time, when any value differs (the newest run wins);
    - an unmatched row is inserted.
    Column lists are explicit, so the statement does not depend on column order."""
    columns, on, newer = _merge_conditions(dataset)
    assignments = ", ".join(f"t.{_q(c)} = s.{_q(c)}" for c in columns)
    return (
        f"MERGE INTO {table} t USING {source_view} s\n"
        f"ON {on}\n"
        f"WHEN MATCHED AND ({newer}) THEN UPDATE SET {assignments}\n"
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(map(_q, columns))}) "
        f"VALUES ({', '.join('s.' + _q(c) for c in columns)})"
    )


def latest_snapshot(spark, table: str) -> dict | None:
    """The table's newest snapshot: id, operation and Iceberg's summary (records added,
    removed, in total), or None for a table without one."""
    rows = spark.sql(
        f"SELECT snapshot_id, operation, summary FROM {table}.snapshots "
        "ORDER BY committed_at DESC LIMIT 1"
    ).collect()
    if not rows:
        return None
    row = rows[0]
    return {
        "snapshot_id": row["snapshot_id"],
        "operation": row["operation"],
        "summary": dict(row["summary"] or {}),
    }


def merge(spark, dataset: Dataset, table: str, batch, log=print) -> dict:
    """Evolve the table's schema to the spec, MERGE into it the batch rows that change it,
    and say what changed: the schema statements, the rows inserted and updated, and the new
    snapshot (None when nothing changed: then no MERGE runs and no snapshot is made)."""
    from pyspark.sql import functions as F

    changes = evolve(spark, dataset, table, log=log)
    before = latest_snapshot(spark, table)
    view, changed_view = f"__dp_curate_batch_{dataset.name}", f"__dp_curate_changes_{dataset.name}"
    batch.createOrReplaceTempView(view)
    changed = spark.sql(changes_sql(dataset, table, view)).cache()
    try:
        counts = (
            changed.groupBy()
            .agg(F.count(F.lit(1)).alias("rows"), F.count_if(F.col("__dp_new")).alias("new"))
            .collect()[0]
        )
        inserted, updated = int(counts["new"]), int(counts["rows"]) - int(counts["new"])
        if inserted or updated:
            changed.drop("__dp_new").createOrReplaceTempView(changed_view)
            spark.sql(merge_sql(dataset, table, changed_view))
    finally:
        spark.catalog.dropTempView(view)
        spark.catalog.dropTempView(changed_view)
        changed.unpersist()
    after = latest_snapshot(spark, table)
    made = (
        after
        if after and (before is None or after["snapshot_id"] != before["snapshot_id"])
        else None
    )
    return {
        "schema_changes": changes,
        "rows_inserted": inserted,
        "rows_updated": updated,
        "snapshot": made,
    }
