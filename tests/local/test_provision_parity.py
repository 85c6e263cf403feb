"""Provisioning the local platform from the spec: idempotent, and the same names and
settings as the synthesized CloudFormation templates (the session's dev synth, shared with
tests/infra; moto in-process, no local platform needed)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from dataplatform.bundle import stage_job_code
from dataplatform.naming import BUCKET_ZONES, Names
from dataplatform.runtime.local import provision as prov
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT
from tests.infra.conftest import ACCOUNT, synth_variant  # noqa: F401 (the fixture)

PLATFORM = load_spec(REPO_ROOT / "spec")
ENV = "dev"

# --- provisioning (moto in-process: the control plane is what moto keeps faithfully)


@pytest.fixture(scope="module")
def settings():
    return PLATFORM.environment(ENV)


@pytest.fixture(scope="module")
def names(settings):
    return Names.for_environment(PLATFORM, settings, account=ACCOUNT)


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory, settings, names):
    with mock_aws():

        def clients(service):
            return boto3.client(service, region_name=settings.region)

        job_code = stage_job_code(PLATFORM, tmp_path_factory.mktemp("build"))
        first = prov.provision(PLATFORM, settings, names, clients, job_code_dir=job_code)
        second = prov.provision(PLATFORM, settings, names, clients, job_code_dir=job_code)
        yield first, second, clients


@pytest.fixture(scope="module")
def templates(synth_variant):  # noqa: F811 (the imported fixture)
    return synth_variant(ENV).templates


def test_provisioning_twice_creates_nothing_the_second_time(provisioned):
    first, second, _ = provisioned
    assert set(first) >= {
        "bucket",
        "stream",
        "delivery_stream",
        "database",
        "table",
        "crawler",
        "job",
        "workgroup",
        "kms_alias",
        "security_configuration",
    }
    assert second == {}


def test_lake_buckets_default_to_the_lake_key_and_are_versioned(provisioned, names):
    _, _, clients = provisioned
    s3, kms = clients("s3"), clients("kms")
    key_arn = kms.describe_key(KeyId=names.lake_key_alias)["KeyMetadata"]["Arn"]
    for zone in BUCKET_ZONES:
        bucket = names.bucket(zone)
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ][0]
        expected = (
            {"SSEAlgorithm": "AES256"}
            if zone == "access-logs"
            else {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
        )
        assert rule["ApplyServerSideEncryptionByDefault"] == expected
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        assert (
            s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"][
                "RestrictPublicBuckets"
            ]
            is True
        )


def test_job_code_is_uploaded_where_the_glue_jobs_point(provisioned, names):
    _, _, clients = provisioned
    glue, s3 = clients("glue"), clients("s3")
    for ds in PLATFORM.datasets:
        job = glue.get_job(JobName=names.curate_job(ds.name))["Job"]
        script = job["Command"]["ScriptLocation"].removeprefix(f"s3://{names.artifacts_bucket}/")
        library = job["DefaultArguments"]["--extra-py-files"].removeprefix(
            f"s3://{names.artifacts_bucket}/"
        )
        body = s3.get_object(Bucket=names.artifacts_bucket, Key=script)["Body"].read()
        assert b"from dataplatform.jobs.curate_run import main" in body
        assert s3.head_object(Bucket=names.artifacts_bucket, Key=library)["ContentLength"] > 1000


# --- parity with the synthesized templates


def _template_values(templates, kind, type_, *path):
    values = set()
    for resource in templates[kind]["Resources"].values():
        if resource["Type"] == type_:
            value = resource["Properties"]
            for step in path:
                value = value[step]
            values.add(value)
    return values


def test_local_names_equal_the_deployed_names(provisioned, templates, names):
    _, _, clients = provisioned
    s3, kinesis, firehose, glue, athena, kms = (
        clients(s) for s in ("s3", "kinesis", "firehose", "glue", "athena", "kms")
    )
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == _template_values(
        templates, "storage", "AWS::S3::Bucket", "BucketName"
    )
    assert set(kinesis.list_streams()["StreamNames"]) == _template_values(
        templates, "streaming", "AWS::Kinesis::Stream", "Name"
    )
    assert set(firehose.list_delivery_streams()["DeliveryStreamNames"]) == _template_values(
        templates, "streaming", "AWS::KinesisFirehose::DeliveryStream", "DeliveryStreamName"
    )
    assert {d["Name"] for d in glue.get_databases()["DatabaseList"]} == _template_values(
        templates, "catalog", "AWS::Glue::Database", "DatabaseInput", "Name"
    )
    assert set(glue.list_crawlers()["CrawlerNames"]) == _template_values(
        templates, "catalog", "AWS::Glue::Crawler", "Name"
    )
    assert set(glue.list_jobs()["JobNames"]) == _template_values(
        templates, "catalog", "AWS::Glue::Job", "Name"
    )
    assert {
        c["Name"] for c in glue.get_security_configurations()["SecurityConfigurations"]
    } == _template_values(templates, "catalog", "AWS::Glue::SecurityConfiguration", "Name")
    assert names.workgroup in {w["Name"] for w in athena.list_work_groups()["WorkGroups"]}
    assert {names.workgroup} == _template_values(
        templates, "analytics", "AWS::Athena::WorkGroup", "Name"
    )
    assert names.lake_key_alias in {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
    assert {names.lake_key_alias} == _template_values(
        templates, "storage", "AWS::KMS::Alias", "AliasName"
    )


def test_local_tables_have_the_deployed_columns_locations_and_partitions(
    provisioned, templates, names
):
    _, _, clients = provisioned
    glue = clients("glue")
    database_zone = {
        lid: r["Properties"]["DatabaseInput"]["Name"].rsplit("_", 1)[1]
        for lid, r in templates["catalog"]["Resources"].items()
        if r["Type"] == "AWS::Glue::Database"
    }
    deployed = {}
    for resource in templates["catalog"]["Resources"].values():
        if resource["Type"] == "AWS::Glue::Table":
            table = resource["Properties"]["TableInput"]
            zone = database_zone[resource["Properties"]["DatabaseName"]["Ref"]]
            deployed[(zone, table["Name"])] = table
    assert ("curated", names.quarantine_table("telecom_events")) in deployed
    for (zone, name), table in deployed.items():
        local = glue.get_table(DatabaseName=names.database(zone), Name=name)["Table"]
        columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
        assert [(c["Name"], c["Type"]) for c in local["StorageDescriptor"]["Columns"]] == columns
        assert [p["Name"] for p in local["PartitionKeys"]] == [
            p["Name"] for p in table["PartitionKeys"]
        ]
        assert (
            local["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
            == table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
        )
        location = local["StorageDescriptor"]["Location"]
        expected_prefix = (
            f"_quarantine/{name.removesuffix('_quarantine')}/"
            if name.endswith("_quarantine")
            else f"{name}/"
        )
        assert location == f"s3://{names.bucket(zone)}/{expected_prefix}"
        for key in ("projection.dt.range", "projection.hour.range", "skip.header.line.count"):
            assert local["Parameters"].get(key) == table.get("Parameters", {}).get(key)


def test_local_lifecycle_rules_equal_the_deployed_ones(provisioned, templates, names, settings):
    _, _, clients = provisioned
    s3 = clients("s3")
    deployed = {
        r["Properties"]["BucketName"]: r["Properties"]["LifecycleConfiguration"]["Rules"]
        for r in templates["storage"]["Resources"].values()
        if r["Type"] == "AWS::S3::Bucket"
    }
    for bucket, rules in deployed.items():
        local = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
        assert set(local) == {r["Id"] for r in rules}, bucket
        for rule in rules:
            mine = local[rule["Id"]]
            if "Transitions" in rule:
                assert [
                    (t["StorageClass"], t["TransitionInDays"]) for t in rule["Transitions"]
                ] == [(t["StorageClass"], t["Days"]) for t in mine["Transitions"]]
            if "ExpirationInDays" in rule:
                assert mine["Expiration"]["Days"] == rule["ExpirationInDays"]
            if "NoncurrentVersionExpiration" in rule:
                assert (
                    mine["NoncurrentVersionExpiration"]["NoncurrentDays"]
                    == rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
                )


def test_local_job_arguments_equal_the_deployed_ones(provisioned, templates, names):
    _, _, clients = provisioned
    glue = clients("glue")
    for resource in templates["catalog"]["Resources"].values():
        if resource["Type"] != "AWS::Glue::Job":
            continue
        deployed = resource["Properties"]["DefaultArguments"]
        local = glue.get_job(JobName=resource["Properties"]["Name"])["Job"]["DefaultArguments"]
        for key, value in local.items():
            if key == "--extra-py-files":
                continue  # the template's is a Join over the bucket reference
            assert deployed[key] == value, key


def test_what_training_and_serving_look_up_is_provisioned_as_the_stacks_create_it(
    provisioned, templates, names
):
    """The AWS target's training code finds the VPC by its Name tag, its private subnets by
    CDK's subnet-type tag and the security group by name (runtime/aws/training.py), and
    SageMaker assumes the execution role: the same CIDRs, tags, names and trust locally."""
    _, _, clients = provisioned
    ec2, iam = clients("ec2"), clients("iam")

    def tag(resource: dict, key: str):
        return next((t["Value"] for t in resource.get("Tags") or [] if t["Key"] == key), None)

    network = templates["network"]["Resources"].values()
    (vpc,) = [r["Properties"] for r in network if r["Type"] == "AWS::EC2::VPC"]
    deployed_subnets = {
        (r["Properties"]["CidrBlock"], tag(r["Properties"], "aws-cdk:subnet-type"))
        for r in network
        if r["Type"] == "AWS::EC2::Subnet"
    }
    (local_vpc,) = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [names.vpc]}])["Vpcs"]
    assert local_vpc["CidrBlock"] == vpc["CidrBlock"] and tag(vpc, "Name") == names.vpc
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [local_vpc["VpcId"]]}])[
        "Subnets"
    ]
    assert {(s["CidrBlock"], tag(s, "aws-cdk:subnet-type")) for s in subnets} == deployed_subnets
    groups = {
        r["Properties"]["GroupName"]
        for kind in ("ml", "serving")
        for r in templates[kind]["Resources"].values()
        if r["Type"] == "AWS::EC2::SecurityGroup"
    }
    local_groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [local_vpc["VpcId"]]}]
    )["SecurityGroups"]
    looked_up = {names.training_security_group, names.endpoint_security_group}
    assert looked_up <= groups and looked_up <= {g["GroupName"] for g in local_groups}
    (role,) = [
        r["Properties"]
        for r in templates["ml"]["Resources"].values()
        if r["Type"] == "AWS::IAM::Role" and r["Properties"].get("RoleName") == names.sagemaker_role
    ]
    local_role = iam.get_role(RoleName=names.sagemaker_role)["Role"]
    (deployed,) = role["AssumeRolePolicyDocument"]["Statement"]
    (local,) = local_role["AssumeRolePolicyDocument"]["Statement"]
    assert (local["Principal"], local["Action"]) == (deployed["Principal"], deployed["Action"])
    assert local["Condition"]["StringEquals"].keys() == deployed["Condition"]["StringEquals"].keys()
