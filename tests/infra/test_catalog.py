"""CatalogStack: Glue databases, catalog encryption, the security configuration and, per
dataset, its raw and curated tables, raw crawler, curate job, their roles and the job code.

Expected values come from the spec (spec/), naming (dataplatform.naming) and the key
layout (dataplatform.layout); cross-stack references are resolved through the storage
stack's exports to the physical names they stand for.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import zipfile

import pytest
from aws_cdk.assertions import Match

from dataplatform import layout
from dataplatform.bundle import stage_job_code
from dataplatform.spec import COLUMN_TYPES, load_compiled_dataset, load_spec
from stacks.constructs.curate_job import GLUE_TEMP_PREFIX, curate_job_arguments
from stacks.platform import REPO_ROOT
from tests.infra.conftest import Synth, lake_key, logical_id, resolve, s3_arn

DATASETS = [d.name for d in load_spec(REPO_ROOT / "spec").datasets]
HIVE_DATASETS = [d.name for d in load_spec(REPO_ROOT / "spec").datasets if not d.is_iceberg]

# Spec column type -> Glue (Hive) column type of the curated table.
SPEC_TO_GLUE = {
    "string": "string",
    "int": "int",
    "bigint": "bigint",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}
RAW_SERDES = {
    "json": "org.openx.data.jsonserde.JsonSerDe",
    "csv": "org.apache.hadoop.hive.serde2.OpenCSVSerde",
}
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject")


# ----------------------------------------------------------------------------- helpers


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def props(synth: Synth, type_: str, **properties) -> dict:
    return synth.templates["catalog"]["Resources"][
        logical_id(synth, "catalog", type_, **properties)
    ]["Properties"]


def database_lid(synth: Synth, zone: str) -> str:
    databases = [
        lid
        for lid, r in synth.resources("catalog", "AWS::Glue::Database").items()
        if r["Properties"]["DatabaseInput"]["Name"] == synth.names.database(zone)
    ]
    assert len(databases) == 1, databases
    return databases[0]


def table(synth: Synth, zone: str, dataset: str) -> dict:
    """TableInput of `dataset`'s table in the `zone` database."""
    database = {"Ref": database_lid(synth, zone)}
    tables = [
        r["Properties"]["TableInput"]
        for r in synth.resources("catalog", "AWS::Glue::Table").values()
        if r["Properties"]["DatabaseName"] == database
        and r["Properties"]["TableInput"]["Name"] == synth.names.table(dataset)
    ]
    assert len(tables) == 1, f"{zone}.{dataset}: {len(tables)} tables"
    return tables[0]


def role_lid(synth: Synth, role_name: str) -> str:
    return logical_id(synth, "catalog", "AWS::IAM::Role", RoleName=role_name)


def role_statements(synth: Synth, role_name: str) -> list[dict]:
    """Every statement of every policy attached to the role (inline ones included)."""
    lid = role_lid(synth, role_name)
    statements = []
    for policy in synth.resources("catalog", "AWS::IAM::Policy").values():
        if {"Ref": lid} in policy["Properties"].get("Roles", []):
            statements += as_list(policy["Properties"]["PolicyDocument"]["Statement"])
    role = synth.templates["catalog"]["Resources"][lid]["Properties"]
    for policy in role.get("Policies", []):
        statements += as_list(policy["PolicyDocument"]["Statement"])
    assert not role.get("ManagedPolicyArns"), "managed policies are not least privilege"
    return statements


def object_resources(
    synth: Synth, statements: list[dict], actions: tuple[str, ...] = OBJECT_ACTIONS
) -> list[str]:
    """Resolved resources of the Allow statements granting any of `actions` (wildcards in
    the statement's actions count); bare bucket ARNs are bucket-level and left out."""
    buckets = {
        s3_arn(r["Properties"]["BucketName"])
        for r in synth.resources("storage", "AWS::S3::Bucket").values()
    }
    found = []
    for s in statements:
        assert "NotAction" not in s and "NotResource" not in s, s
        if s["Effect"] != "Allow":
            continue
        patterns = as_list(s["Action"])
        if not any(fnmatch.fnmatchcase(a, p) for a in actions for p in patterns):
            continue
        found += [
            r for r in (resolve(synth, v) for v in as_list(s["Resource"])) if r not in buckets
        ]
    return found


def mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def curate_job_prefixes(synth: Synth, ds: str) -> list[str]:
    names = synth.names
    return [
        f"{s3_arn(names.raw_bucket)}/{layout.raw_prefix(ds)}",
        f"{s3_arn(names.curated_bucket)}/{layout.curated_prefix(ds)}",
        f"{s3_arn(names.curated_bucket)}/{layout.quarantine_prefix(ds)}",
        f"{s3_arn(names.curated_bucket)}/{layout.curate_state_key(ds)}",
        f"{s3_arn(names.artifacts_bucket)}/{layout.CODE_PREFIX}",
        f"{s3_arn(names.artifacts_bucket)}/{layout.curate_report_prefix(ds)}",
        f"{s3_arn(names.artifacts_bucket)}/{GLUE_TEMP_PREFIX}{names.curate_job(ds)}/",
    ]


# ----------------------------------------------------------------------------- databases


def test_databases_for_raw_curated_and_features_are_named_by_naming(each_env):
    names = each_env.names
    databases = sorted(
        r["Properties"]["DatabaseInput"]["Name"]
        for r in each_env.resources("catalog", "AWS::Glue::Database").values()
    )
    assert databases == sorted(names.database(z) for z in ("raw", "curated", "features"))
    for zone in ("raw", "curated", "features"):
        each_env.template("catalog").has_resource_properties(
            "AWS::Glue::Database",
            {
                "CatalogId": names.account,
                "DatabaseInput": Match.object_like(
                    {"Name": names.database(zone), "LocationUri": f"s3://{names.bucket(zone)}/"}
                ),
            },
        )


def test_catalog_is_encrypted_with_the_imported_lake_key(each_env):
    (settings,) = each_env.resources("catalog", "AWS::Glue::DataCatalogEncryptionSettings").values()
    assert settings["Properties"]["CatalogId"] == each_env.names.account
    encryption = settings["Properties"]["DataCatalogEncryptionSettings"]
    at_rest = encryption["EncryptionAtRest"]
    assert at_rest["CatalogEncryptionMode"] == "SSE-KMS"
    assert set(at_rest["SseAwsKmsKeyId"]) == {"Fn::ImportValue"}
    assert at_rest["SseAwsKmsKeyId"]["Fn::ImportValue"]
    assert resolve(each_env, at_rest["SseAwsKmsKeyId"]) == lake_key(each_env)
    passwords = encryption["ConnectionPasswordEncryption"]
    assert passwords["ReturnConnectionPasswordEncrypted"] is True
    assert resolve(each_env, passwords["KmsKeyId"]) == lake_key(each_env)


def test_tables_are_created_after_catalog_encryption(each_env):
    (encryption_lid,) = each_env.resources("catalog", "AWS::Glue::DataCatalogEncryptionSettings")
    for lid, t in each_env.resources("catalog", "AWS::Glue::Table").items():
        assert encryption_lid in as_list(t.get("DependsOn", [])), lid


def test_security_configuration_encrypts_s3_logs_and_bookmarks_with_lake_key(each_env):
    key = lake_key(each_env)
    config = props(
        each_env, "AWS::Glue::SecurityConfiguration", Name=each_env.names.security_configuration
    )["EncryptionConfiguration"]
    assert [
        (s["S3EncryptionMode"], resolve(each_env, s["KmsKeyArn"])) for s in config["S3Encryptions"]
    ] == [("SSE-KMS", key)]
    assert config["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert resolve(each_env, config["CloudWatchEncryption"]["KmsKeyArn"]) == key
    assert config["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"
    assert resolve(each_env, config["JobBookmarksEncryption"]["KmsKeyArn"]) == key


# ----------------------------------------------------------------------------- tables


def test_spec_has_drop_and_pii_columns_for_the_table_tests_to_cover():
    datasets = load_spec(REPO_ROOT / "spec").datasets
    assert any(c.drop for d in datasets for c in d.columns)
    assert any(d.pii for d in datasets)


@pytest.mark.parametrize("ds", DATASETS)
def test_raw_table_reads_every_spec_column_as_string(each_env, ds):
    dataset = each_env.platform.dataset(ds)
    raw = table(each_env, "raw", ds)
    columns = raw["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in columns] == [c.name for c in dataset.columns]
    # the raw table keeps columns the curated one drops (the spec has some: checked below)
    assert {c["Type"] for c in columns} == {"string"}
    assert raw["PartitionKeys"] == [
        {"Name": "dt", "Type": "string"},
        {"Name": "hour", "Type": "string"},
    ]
    assert raw["TableType"] == "EXTERNAL_TABLE"


@pytest.mark.parametrize("ds", DATASETS)
def test_raw_table_projects_dt_and_hour_partitions(each_env, ds):
    parameters = table(each_env, "raw", ds)["Parameters"]
    assert parameters["projection.enabled"] == "true"
    assert parameters["projection.dt.type"] == "date"
    assert parameters["projection.dt.range"] == "2000-01-01,NOW+1DAYS"
    assert parameters["projection.dt.format"] == "yyyy-MM-dd"
    assert parameters["projection.hour.type"] == "integer"
    assert parameters["projection.hour.range"] == "0,23"
    assert parameters["projection.hour.digits"] == "2"


@pytest.mark.parametrize("ds", DATASETS)
def test_raw_table_serde_and_location_follow_the_dataset_format(each_env, ds):
    dataset = each_env.platform.dataset(ds)
    raw = table(each_env, "raw", ds)
    storage = raw["StorageDescriptor"]
    assert storage["SerdeInfo"]["SerializationLibrary"] == RAW_SERDES[dataset.format]
    assert resolve(each_env, storage["Location"]) == (
        f"s3://{each_env.names.raw_bucket}/{layout.raw_prefix(ds)}"
    )
    if dataset.format == "csv":
        assert raw["Parameters"]["skip.header.line.count"] == "1"
    else:
        assert "skip.header.line.count" not in raw["Parameters"]


def test_raw_serdes_cover_json_and_csv_datasets(dev):
    assert {d.format for d in dev.platform.datasets} == set(RAW_SERDES)
    assert dev.platform.dataset("telecom_events").format == "json"
    assert dev.platform.dataset("house_sales").format == "csv"


@pytest.mark.parametrize("ds", HIVE_DATASETS)  # Iceberg ones: tests/infra/test_iceberg.py
def test_curated_table_is_parquet_with_typed_kept_columns(each_env, ds):
    assert set(SPEC_TO_GLUE) == set(COLUMN_TYPES)
    dataset = each_env.platform.dataset(ds)
    curated = table(each_env, "curated", ds)
    storage = curated["StorageDescriptor"]
    assert [(c["Name"], c["Type"]) for c in storage["Columns"]] == [
        (c.name, SPEC_TO_GLUE[c.type]) for c in dataset.kept_columns
    ]
    dropped = {c.name for c in dataset.columns if c.drop}
    assert not dropped & {c["Name"] for c in storage["Columns"]}
    assert curated["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert storage["SerdeInfo"]["SerializationLibrary"] == PARQUET_SERDE
    assert storage["InputFormat"] == PARQUET_INPUT
    assert curated["Parameters"]["classification"] == "parquet"
    assert resolve(each_env, storage["Location"]) == (
        f"s3://{each_env.names.curated_bucket}/{layout.curated_prefix(ds)}"
    )


@pytest.mark.parametrize("zone", ["raw", "curated"])
@pytest.mark.parametrize("ds", DATASETS)
def test_pii_columns_are_marked_in_comments_and_table_parameters(each_env, ds, zone):
    dataset = each_env.platform.dataset(ds)
    t = table(each_env, zone, ds)
    assert t["Parameters"].get("pii_columns", "") == ",".join(dataset.pii)
    for column in t["StorageDescriptor"]["Columns"]:
        comment = column.get("Comment", "")
        if column["Name"] == "dt":  # an Iceberg table's partition source is a column
            assert dataset.is_iceberg and zone == "curated"
            continue
        if column["Name"] in dataset.pii:
            assert "PII" in comment, column
        else:
            assert "PII" not in comment, column
            description = dataset.column(column["Name"]).description
            if description:
                assert description in comment, column


# ----------------------------------------------------------------------------- crawlers


@pytest.mark.parametrize("ds", DATASETS)
def test_crawler_adds_new_raw_folders_and_only_logs_schema_changes(each_env, ds):
    names = each_env.names
    crawler = props(each_env, "AWS::Glue::Crawler", Name=names.crawler(ds))
    assert [resolve(each_env, t["Path"]) for t in crawler["Targets"]["S3Targets"]] == [
        f"s3://{names.raw_bucket}/{layout.raw_prefix(ds)}"
    ]
    assert crawler["RecrawlPolicy"] == {"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"}
    assert crawler["SchemaChangePolicy"] == {"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"}
    security_lid = logical_id(
        each_env, "catalog", "AWS::Glue::SecurityConfiguration", Name=names.security_configuration
    )
    assert crawler["CrawlerSecurityConfiguration"] == {"Ref": security_lid}
    assert crawler["DatabaseName"] == {"Ref": database_lid(each_env, "raw")}
    assert crawler["Role"] == {"Fn::GetAtt": [role_lid(each_env, names.crawler_role(ds)), "Arn"]}


@pytest.mark.parametrize("ds", DATASETS)
def test_crawler_schedule_follows_environment_setting(each_env, ds):
    schedule = each_env.platform.environment(each_env.env).glue.crawler_schedule
    expected = Match.absent() if schedule is None else {"ScheduleExpression": schedule}
    each_env.template("catalog").has_resource_properties(
        "AWS::Glue::Crawler", {"Name": each_env.names.crawler(ds), "Schedule": expected}
    )


def test_crawler_schedules_differ_between_dev_and_prod(dev, prod):
    assert dev.platform.environment("dev").glue.crawler_schedule is None
    assert prod.platform.environment("prod").glue.crawler_schedule
    for ds in DATASETS:
        assert "Schedule" not in props(dev, "AWS::Glue::Crawler", Name=dev.names.crawler(ds))
        assert props(prod, "AWS::Glue::Crawler", Name=prod.names.crawler(ds))["Schedule"] == {
            "ScheduleExpression": prod.platform.environment("prod").glue.crawler_schedule
        }


# ----------------------------------------------------------------------------- curate jobs


@pytest.mark.parametrize("ds", DATASETS)
def test_curate_job_runs_glue_5_with_environment_capacity(each_env, ds):
    glue = each_env.platform.environment(each_env.env).glue
    names = each_env.names
    security_lid = logical_id(
        each_env, "catalog", "AWS::Glue::SecurityConfiguration", Name=names.security_configuration
    )
    each_env.template("catalog").has_resource_properties(
        "AWS::Glue::Job",
        {
            "Name": names.curate_job(ds),
            # Glue 5.1 ships the Iceberg (1.10) the local platform runs
            "GlueVersion": "5.1" if each_env.platform.dataset(ds).is_iceberg else "5.0",
            "WorkerType": glue.worker_type,
            "NumberOfWorkers": glue.number_of_workers,
            "ExecutionProperty": {"MaxConcurrentRuns": 1},
            "MaxRetries": 1,
            "Timeout": glue.timeout_minutes,
            "SecurityConfiguration": {"Ref": security_lid},
            "Role": {"Fn::GetAtt": [role_lid(each_env, names.curate_job_role(ds)), "Arn"]},
            "Command": Match.object_like({"Name": "glueetl"}),
        },
    )


def test_curate_job_capacity_differs_between_dev_and_prod(dev, prod):
    dev_glue = dev.platform.environment("dev").glue
    prod_glue = prod.platform.environment("prod").glue
    assert (dev_glue.worker_type, dev_glue.number_of_workers, dev_glue.timeout_minutes) != (
        prod_glue.worker_type,
        prod_glue.number_of_workers,
        prod_glue.timeout_minutes,
    )
    for synth, glue in ((dev, dev_glue), (prod, prod_glue)):
        for ds in DATASETS:
            job = props(synth, "AWS::Glue::Job", Name=synth.names.curate_job(ds))
            assert (job["WorkerType"], job["NumberOfWorkers"], job["Timeout"]) == (
                glue.worker_type,
                glue.number_of_workers,
                glue.timeout_minutes,
            )


@pytest.mark.parametrize("ds", DATASETS)
def test_curate_job_runs_the_deployed_script_and_library(each_env, ds):
    names = each_env.names
    job = props(each_env, "AWS::Glue::Job", Name=names.curate_job(ds))
    script = resolve(each_env, job["Command"]["ScriptLocation"])
    assert script.endswith(layout.job_script_key("glue_jobs", "curate.py"))
    assert (
        script == f"s3://{names.artifacts_bucket}/{layout.job_script_key('glue_jobs', 'curate.py')}"
    )
    library = resolve(each_env, job["DefaultArguments"]["--extra-py-files"])
    assert library.endswith(layout.LIBRARY_KEY)
    assert library == f"s3://{names.artifacts_bucket}/{layout.LIBRARY_KEY}"


@pytest.mark.parametrize("ds", DATASETS)
def test_curate_job_logs_continuously_and_publishes_metrics(each_env, ds):
    arguments = props(each_env, "AWS::Glue::Job", Name=each_env.names.curate_job(ds))[
        "DefaultArguments"
    ]
    assert arguments["--enable-continuous-cloudwatch-log"] == "true"
    assert "--enable-metrics" in arguments  # Glue enables metrics when the key is present
    assert arguments["--enable-observability-metrics"] == "true"


@pytest.mark.parametrize("ds", DATASETS)
def test_curate_job_default_arguments_match_the_local_platform(each_env, ds):
    dataset = each_env.platform.dataset(ds)
    expected = curate_job_arguments(dataset, each_env.names)
    assert expected["--dataset"] == ds
    arguments = props(each_env, "AWS::Glue::Job", Name=each_env.names.curate_job(ds))[
        "DefaultArguments"
    ]
    for key, value in expected.items():
        assert key in arguments, key
        assert resolve(each_env, arguments[key]) == value, key


@pytest.mark.parametrize("ds", DATASETS)
def test_curate_job_arguments_point_at_the_dataset_locations(each_env, ds):
    names = each_env.names
    arguments = props(each_env, "AWS::Glue::Job", Name=names.curate_job(ds))["DefaultArguments"]
    curated = f"s3://{names.curated_bucket}/"
    assert {
        k: resolve(each_env, arguments[k])
        for k in (
            "--dataset",
            "--raw-path",
            "--curated-path",
            "--quarantine-path",
            "--state-path",
            "--reports-path",
            "--raw-database",
            "--curated-database",
            "--table",
        )
    } == {
        "--dataset": ds,
        "--raw-path": f"s3://{names.raw_bucket}/{layout.raw_prefix(ds)}",
        "--curated-path": curated + layout.curated_prefix(ds),
        "--quarantine-path": curated + layout.quarantine_prefix(ds),
        "--state-path": curated + layout.curate_state_key(ds),
        "--reports-path": f"s3://{names.artifacts_bucket}/{layout.curate_report_prefix(ds)}",
        "--raw-database": names.raw_database,
        "--curated-database": names.curated_database,
        "--table": names.table(ds),
    }
    assert resolve(each_env, arguments["--TempDir"]) == (
        f"s3://{names.artifacts_bucket}/{GLUE_TEMP_PREFIX}{names.curate_job(ds)}/"
    )


# ----------------------------------------------------------------------------- least privilege


@pytest.mark.parametrize("ds", DATASETS)
def test_curate_job_role_reaches_only_its_own_prefixes(each_env, ds):
    allowed = curate_job_prefixes(each_env, ds)
    resources = object_resources(
        each_env, role_statements(each_env, each_env.names.curate_job_role(ds))
    )
    assert resources
    for resource in resources:
        assert any(resource.startswith(prefix) for prefix in allowed), resource


@pytest.mark.parametrize("ds", DATASETS)
def test_curate_job_role_can_read_raw_and_write_curated_quarantine_and_state(each_env, ds):
    names = each_env.names
    statements = role_statements(each_env, names.curate_job_role(ds))
    reads = object_resources(each_env, statements, ("s3:GetObject",))
    writes = set(object_resources(each_env, statements, WRITE_ACTIONS))
    assert f"{s3_arn(names.raw_bucket)}/{layout.raw_prefix(ds)}*" in reads
    for key in (
        f"{layout.curated_prefix(ds)}*",
        f"{layout.quarantine_prefix(ds)}*",
        layout.curate_state_key(ds),
    ):
        assert f"{s3_arn(names.curated_bucket)}/{key}" in writes, key
    assert f"{s3_arn(names.artifacts_bucket)}/{layout.curate_report_prefix(ds)}*" in writes


@pytest.mark.parametrize("ds", DATASETS)
def test_curate_job_role_never_writes_raw_data_or_job_code(each_env, ds):
    names = each_env.names
    writes = object_resources(
        each_env, role_statements(each_env, names.curate_job_role(ds)), WRITE_ACTIONS
    )
    assert writes
    for resource in writes:
        assert not resource.startswith(s3_arn(names.raw_bucket)), resource
        assert not resource.startswith(f"{s3_arn(names.artifacts_bucket)}/{layout.CODE_PREFIX}"), (
            resource
        )


@pytest.mark.parametrize("ds", DATASETS)
def test_crawler_role_reads_only_its_raw_prefix(each_env, ds):
    names = each_env.names
    statements = role_statements(each_env, names.crawler_role(ds))
    own = f"{s3_arn(names.raw_bucket)}/{layout.raw_prefix(ds)}"
    resources = object_resources(each_env, statements)
    assert f"{own}*" in resources
    for resource in resources:
        assert resource.startswith(own), resource
    assert object_resources(each_env, statements, WRITE_ACTIONS) == []


@pytest.mark.parametrize("role", ["crawler_role", "curate_job_role"])
@pytest.mark.parametrize("ds", DATASETS)
def test_role_policy_never_names_another_dataset(each_env, ds, role):
    names = each_env.names
    role_name = getattr(names, role)(ds)
    lid = role_lid(each_env, role_name)
    text = json.dumps([resolve_deep(each_env, s) for s in role_statements(each_env, role_name)])
    text += json.dumps(each_env.templates["catalog"]["Resources"][lid]["Properties"])
    assert mentions(text, ds)
    for other in DATASETS:
        if other != ds:
            assert not mentions(text, other), other


def resolve_deep(synth: Synth, value):
    """A statement with every intrinsic (Fn::Join, Fn::ImportValue, ...) resolved."""
    if isinstance(value, dict):
        try:
            return resolve(synth, value)
        except AssertionError:
            return {k: resolve_deep(synth, v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_deep(synth, v) for v in value]
    return value


@pytest.mark.parametrize("ds", DATASETS)
def test_roles_are_named_by_naming_and_only_the_curate_role_has_phi_access(each_env, ds):
    names = each_env.names
    resources = each_env.templates["catalog"]["Resources"]
    curate = resources[role_lid(each_env, names.curate_job_role(ds))]["Properties"]
    crawler = resources[role_lid(each_env, names.crawler_role(ds))]["Properties"]
    assert {"Key": "phi-access", "Value": "true"} in curate["Tags"]
    assert "phi-access" not in {t["Key"] for t in crawler.get("Tags", [])}
    for role in (curate, crawler):
        assert role["AssumeRolePolicyDocument"]["Statement"] == [
            {
                "Action": "sts:AssumeRole",
                "Effect": "Allow",
                "Principal": {"Service": "glue.amazonaws.com"},
            }
        ]


# ----------------------------------------------------------------------------- job code


def test_job_code_is_deployed_under_code_prefix_encrypted_and_pruned(each_env):
    (deployment,) = each_env.resources("catalog", "Custom::CDKBucketDeployment").values()
    p = deployment["Properties"]
    assert p["DestinationBucketKeyPrefix"] == layout.CODE_PREFIX
    assert resolve(each_env, p["DestinationBucketName"]) == each_env.names.artifacts_bucket
    assert p["Prune"] is True
    assert p["SystemMetadata"]["sse"] == "aws:kms"
    assert resolve(each_env, p["SystemMetadata"]["sse-kms-key-id"]) == lake_key(each_env, "Ref")


def test_curate_jobs_start_after_their_code_is_deployed(each_env):
    (deployment_lid,) = each_env.resources("catalog", "Custom::CDKBucketDeployment")
    for ds in DATASETS:
        job_lid = logical_id(
            each_env, "catalog", "AWS::Glue::Job", Name=each_env.names.curate_job(ds)
        )
        depends = as_list(each_env.templates["catalog"]["Resources"][job_lid].get("DependsOn", []))
        assert deployment_lid in depends, ds


def _relative(key: str) -> str:
    assert key.startswith(layout.CODE_PREFIX)
    return key[len(layout.CODE_PREFIX) :]


def test_staged_job_code_has_script_and_library_at_layout_keys(dev, tmp_path):
    staged = stage_job_code(dev.platform, tmp_path)
    script = staged / _relative(layout.job_script_key("glue_jobs", "curate.py"))
    assert script.read_bytes() == (REPO_ROOT / "glue_jobs" / "curate.py").read_bytes()
    library = staged / _relative(layout.LIBRARY_KEY)
    with zipfile.ZipFile(library) as zf:
        members = set(zf.namelist())
    assert {
        "dataplatform/__init__.py",
        "dataplatform/spec/__init__.py",
        "dataplatform/naming.py",
        "dataplatform/layout.py",
        "dataplatform/spec.json",
    } <= members


def test_library_zip_carries_the_compiled_spec(dev, tmp_path):
    staged = stage_job_code(dev.platform, tmp_path / "stage")
    with zipfile.ZipFile(staged / _relative(layout.LIBRARY_KEY)) as zf:
        zf.extract("dataplatform/spec.json", tmp_path / "extracted")
    compiled = tmp_path / "extracted" / "dataplatform" / "spec.json"
    for ds in DATASETS:
        assert load_compiled_dataset(compiled, ds) == dev.platform.dataset(ds)
    assert load_compiled_dataset(compiled, "telecom_events") == dev.platform.dataset(
        "telecom_events"
    )


def test_staging_twice_gives_identical_library_zip(dev, tmp_path):
    first = stage_job_code(dev.platform, tmp_path / "a") / _relative(layout.LIBRARY_KEY)
    second = stage_job_code(dev.platform, tmp_path / "b") / _relative(layout.LIBRARY_KEY)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        infos = zf.infolist()
    # Independent of file modification times and of the clock: fixed timestamps, sorted.
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    library_names = [i.filename for i in infos if i.filename.endswith(".py")]
    assert library_names == sorted(library_names)


def test_the_library_zip_is_the_same_wherever_the_spec_is_read_from(tmp_path, monkeypatch):
    """A relative spec path (dp in the repository) and an absolute one (a notebook, the
    tests), or another checkout, give the same job library: the compiled spec holds no path
    of this machine (it did, and the local Spark driver restarted for the "changed" one)."""
    monkeypatch.chdir(REPO_ROOT)
    relative = stage_job_code(load_spec("spec"), tmp_path / "a") / _relative(layout.LIBRARY_KEY)
    copy = tmp_path / "elsewhere" / "spec"
    shutil.copytree(REPO_ROOT / "spec", copy)
    absolute = stage_job_code(load_spec(copy), tmp_path / "b") / _relative(layout.LIBRARY_KEY)
    assert relative.read_bytes() == absolute.read_bytes()
    with zipfile.ZipFile(absolute) as zf:
        compiled = zf.read("dataplatform/spec.json").decode()
    assert str(tmp_path) not in compiled and str(REPO_ROOT) not in compiled
