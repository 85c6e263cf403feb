"""AnalyticsStack: the Athena workgroup (enforced settings, KMS-encrypted results, engine
v3, per-query bytes-scanned cutoff), named queries per dataset, and the scheduled OPTIMIZE /
VACUUM of the curated Iceberg tables (constructs/table_maintenance.py)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from constructs import Construct

from dataplatform import layout
from dataplatform.naming import Names, pascal_case
from dataplatform.spec import Dataset, Environment
from stacks.constructs.lake import Lake
from stacks.constructs.removal import DataRemoval
from stacks.constructs.table_maintenance import TableMaintenance

ENGINE_VERSION = "Athena engine version 3"


def rows_per_day_sql(dataset: Dataset, names: Names) -> str:
    return (
        f"SELECT dt, count(*) AS row_count\n"
        f'FROM "{names.curated_database}"."{names.table(dataset.name)}"\n'
        f"GROUP BY dt\nORDER BY dt DESC\nLIMIT 90"
    )


def profile_sql(dataset: Dataset, names: Names) -> str:
    """Per day: rows, distinct keys (duplicates left?), null rate of each kept column and,
    for numeric columns, min/avg/max. Derived from the spec, so every dataset gets one."""
    table = f'"{names.curated_database}"."{names.table(dataset.name)}"'
    measures = ["count(*) AS row_count"]
    if dataset.primary_key:
        key = (
            dataset.primary_key[0]
            if len(dataset.primary_key) == 1
            else "concat_ws('|', "
            + ", ".join(f"CAST({k} AS varchar)" for k in dataset.primary_key)
            + ")"
        )
        measures.append(f"approx_distinct({key}) AS distinct_keys")
    for column in dataset.kept_columns:
        measures.append(
            f"round(1.0 - count({column.name}) / CAST(count(*) AS double), 4) "
            f"AS {column.name}_null_rate"
        )
        if column.is_numeric:
            measures.append(
                f"min({column.name}) AS {column.name}_min, "
                f"round(avg({column.name}), 3) AS {column.name}_avg, "
                f"max({column.name}) AS {column.name}_max"
            )
    return (
        "SELECT dt,\n  " + ",\n  ".join(measures) + f"\nFROM {table}\n"
        "WHERE dt >= date_format(current_date - interval '7' day, '%Y-%m-%d')\n"
        "GROUP BY dt\nORDER BY dt DESC"
    )


class AnalyticsStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        lake: Lake,
        datasets: tuple[Dataset, ...],
        removal: DataRemoval,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        results = f"s3://{lake.athena_results.bucket_name}/{layout.ATHENA_RESULTS_PREFIX}"
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=names.workgroup,
            description=f"{names.prefix}: queries over the lake; settings enforced",
            state="ENABLED",
            # Deleting a workgroup that still has named queries needs this; only when the
            # deployer opted into destroying data.
            recursive_delete_option=removal.destroys,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=settings.athena.bytes_scanned_cutoff,
                requester_pays_enabled=False,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version=ENGINE_VERSION
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=results,
                    expected_bucket_owner=self.account,
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=lake.key.key_arn
                    ),
                    acl_configuration=athena.CfnWorkGroup.AclConfigurationProperty(
                        s3_acl_option="BUCKET_OWNER_FULL_CONTROL"
                    ),
                ),
            ),
        )
        self.workgroup.apply_removal_policy(
            RemovalPolicy.DESTROY if removal.destroys else RemovalPolicy.RETAIN
        )

        self.named_queries: dict[str, list[athena.CfnNamedQuery]] = {}
        for ds in datasets:
            cid = pascal_case(ds.name)
            queries = []
            for suffix, title, sql in (
                ("RowsPerDay", f"{ds.name}: rows per day", rows_per_day_sql(ds, names)),
                (
                    "Profile",
                    f"{ds.name}: daily data-quality profile (last 7 days)",
                    profile_sql(ds, names),
                ),
            ):
                query = athena.CfnNamedQuery(
                    self,
                    f"{cid}{suffix}",
                    name=title,
                    database=names.curated_database,
                    work_group=self.workgroup.ref,
                    query_string=sql,
                    description=f"{title}, over the curated table",
                )
                queries.append(query)
            self.named_queries[ds.name] = queries

        # Scheduled OPTIMIZE / VACUUM of the curated Iceberg tables whose spec asks for them
        self.maintenance = {
            ds.name: TableMaintenance(
                self,
                f"{pascal_case(ds.name)}Maintenance",
                dataset=ds,
                names=names,
                lake=lake,
                workgroup=names.workgroup,
            )
            for ds in datasets
            if ds.has_scheduled_maintenance
        }
        for maintenance in self.maintenance.values():
            for schedule in maintenance.schedules.values():
                schedule.add_dependency(self.workgroup)
