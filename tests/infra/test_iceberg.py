"""The curated Iceberg tables in the templates (datasets with `table_format: iceberg`; the
shipped spec makes house_sales one): the table Glue creates, the curate job's Glue version,
arguments and commit permission, the scheduled OPTIMIZE / VACUUM with their role and Lake
Formation grant, and EMR's Iceberg classification. Expected values come from the spec and
dataplatform.jobs.iceberg, not from the templates."""

from __future__ import annotations

import json

import pytest

from dataplatform import layout
from dataplatform.jobs import iceberg
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT
from tests.infra.conftest import Synth, logical_id, resolve

SPEC = load_spec(REPO_ROOT / "spec")
ICEBERG = [d.name for d in SPEC.datasets if d.is_iceberg]
HIVE = [d.name for d in SPEC.datasets if not d.is_iceberg]


def test_the_shipped_spec_has_iceberg_and_hive_datasets():
    assert ICEBERG == ["house_sales"] and HIVE


def curated_table(synth: Synth, ds: str) -> dict:
    found = [
        r["Properties"]
        for r in synth.resources("catalog", "AWS::Glue::Table").values()
        if r["Properties"]["TableInput"]["Name"] == synth.names.table(ds)
        and "OpenTableFormatInput" in r["Properties"]
    ]
    assert len(found) == 1, found
    return found[0]


def job(synth: Synth, ds: str) -> dict:
    lid = logical_id(synth, "catalog", "AWS::Glue::Job", Name=synth.names.curate_job(ds))
    return synth.templates["catalog"]["Resources"][lid]["Properties"]


@pytest.mark.parametrize("ds", ICEBERG)
def test_the_curated_table_is_created_as_iceberg_with_the_specs_schema(each_env, ds):
    dataset = each_env.platform.dataset(ds)
    props = curated_table(each_env, ds)
    iceberg_input = props["OpenTableFormatInput"]["IcebergInput"]
    assert iceberg_input["MetadataOperation"] == "CREATE" and iceberg_input["Version"] == "2"
    table = iceberg_input["IcebergTableInput"]
    location = f"s3://{each_env.names.curated_bucket}/{layout.curated_prefix(ds)}"
    assert resolve(each_env, table["Location"]) == location
    fields = table["Schema"]["Fields"]
    assert [(f["Id"], f["Name"], f["Type"], f["Required"]) for f in fields] == [
        (i, c.name, iceberg.ICEBERG_TYPES[c.type], False)
        for i, c in enumerate(dataset.kept_columns, start=1)
    ] + [(len(dataset.kept_columns) + 1, "dt", "string", False)]
    assert "seller_name" not in {f["Name"] for f in fields}  # `drop: true` stays out
    [partition] = table["PartitionSpec"]["Fields"]
    assert partition == {
        "SourceId": len(fields),
        "Transform": "identity",
        "Name": "dt",
        "FieldId": 1000,
    }
    properties = table["Properties"]
    assert properties["write.merge.mode"] == "copy-on-write"
    assert properties["vacuum_max_snapshot_age_seconds"] == str(
        dataset.maintenance.snapshot_retention_days * 86400
    )
    assert properties["vacuum_min_snapshots_to_keep"] == str(
        dataset.maintenance.min_snapshots_to_keep
    )
    assert [c["Name"] for c in props["TableInput"]["StorageDescriptor"]["Columns"]] == [
        f["Name"] for f in fields
    ]


@pytest.mark.parametrize("ds", ICEBERG)
def test_the_iceberg_curate_job_runs_on_glue_5_1_with_the_iceberg_catalog(each_env, ds):
    props = job(each_env, ds)
    assert props["GlueVersion"] == "5.1"
    arguments = props["DefaultArguments"]
    assert arguments["--datalake-formats"] == "iceberg"
    conf = iceberg.parse_glue_conf(resolve(each_env, arguments["--conf"]))
    assert conf == iceberg.catalog_conf(f"s3://{each_env.names.curated_bucket}/")
    assert conf["spark.sql.catalog.glue_catalog.catalog-impl"].endswith("GlueCatalog")


@pytest.mark.parametrize("ds", HIVE)
def test_hive_curate_jobs_stay_on_glue_5_0_without_iceberg(each_env, ds):
    props = job(each_env, ds)
    assert props["GlueVersion"] == "5.0"
    assert "--datalake-formats" not in props["DefaultArguments"]
    assert "--conf" not in props["DefaultArguments"]


def schedules(synth: Synth) -> dict[str, dict]:
    return {
        r["Properties"]["Name"]: r["Properties"]
        for r in synth.resources("analytics", "AWS::Scheduler::Schedule").values()
    }


@pytest.mark.parametrize("ds", ICEBERG)
def test_maintenance_is_scheduled_as_athena_statements_in_the_workgroup(each_env, ds):
    dataset, names = each_env.platform.dataset(ds), each_env.names
    found = schedules(each_env)
    table = f'"{names.curated_database}"."{names.table(ds)}"'
    for kind, statement in (
        ("optimize", f"OPTIMIZE {table} REWRITE DATA USING BIN_PACK"),
        ("vacuum", f"VACUUM {table}"),
    ):
        props = found[f"{names.prefix}-{kind}-{ds}"]
        assert props["ScheduleExpression"] == getattr(dataset.maintenance, kind)
        assert props["ScheduleExpressionTimezone"] == "UTC"
        assert props["State"] == "ENABLED"
        assert props["KmsKeyArn"]  # the lake key encrypts the schedule's input
        target = props["Target"]
        assert target["Arn"] == "arn:aws:scheduler:::aws-sdk:athena:startQueryExecution"
        assert json.loads(target["Input"]) == {
            "QueryString": statement,
            "WorkGroup": names.workgroup,
            "QueryExecutionContext": {"Database": names.curated_database},
        }
        assert names.maintenance_role(ds) in resolve(each_env, target["RoleArn"]) or (
            "Fn::GetAtt" in target["RoleArn"]
        )


def test_only_iceberg_datasets_with_maintenance_get_schedules(each_env):
    expected = {
        f"{each_env.names.prefix}-{kind}-{d.name}"
        for d in each_env.platform.datasets
        if d.is_iceberg
        for kind in ("optimize", "vacuum")
        if getattr(d.maintenance, kind)
    }
    assert set(schedules(each_env)) == expected


@pytest.mark.parametrize("ds", ICEBERG)
def test_the_maintenance_role_has_a_lake_formation_grant_on_its_table_only(each_env, ds):
    from tests.infra.test_governance import grants_of, role_arn

    names = each_env.names
    grants = grants_of(each_env, role_arn(each_env, names.maintenance_role(ds)))
    tables = [g for g in grants if "Table" in g["Resource"]]
    assert len(tables) == 1
    assert tables[0]["Resource"]["Table"]["Name"] == names.table(ds)
    assert set(tables[0]["Permissions"]) == {"SELECT", "DESCRIBE", "INSERT", "DELETE", "ALTER"}


def test_emr_clusters_put_iceberg_on_sparks_class_path(each_env):
    """The cluster definition (the state machine's createCluster and the EMR stack's) asks
    EMR for Iceberg (iceberg-defaults) and Spark for its SQL extensions."""
    text = json.dumps(each_env.templates["orchestration"])
    # the definition is a JSON string inside the template: its quotes are escaped
    assert "iceberg-defaults" in text and "iceberg.enabled" in text
    assert iceberg.EXTENSIONS in text
