"""The resource parity of the local platform with `cdk deploy`: each environment's
synthesized app (dev and prod) applied by the local deployer (runtime/local/deploy/) to
moto in-process. Every resource of every template is applied or listed with its reason,
a second deployment makes nothing, and what was applied reads back, through the services'
own APIs, as the templates define it: names, encryption, lifecycle, tables, job code and
arguments, the network that training looks up, the functions' environments and the state
machine's definition with the local physical ids in it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from dataplatform.naming import BUCKET_ZONES, Names
from dataplatform.runtime.local import provision, synth
from dataplatform.runtime.local.deploy import Assembly, Report
from dataplatform.spec import Environment, load_spec
from stacks.platform import REPO_ROOT

PLATFORM = load_spec(REPO_ROOT / "spec")
ACCOUNT = "123456789012"
# The only resources the local platform does not apply: the functions behind CDK's custom
# resources (the deployer applies those resources itself) and the scorer's event source
# mapping, deferred until its model is served. A new type here fails the test.
UNAPPLIED_TYPES = {
    "AWS::Lambda::Function",
    "AWS::Lambda::LayerVersion",
    "AWS::Lambda::EventSourceMapping",
}


@dataclass
class Deployed:
    env: str
    settings: Environment
    names: Names
    clients: Any
    first: Report
    second: Report
    assembly: Assembly

    def template(self, stack_id: str) -> dict:
        return self.assembly.stacks[stack_id].template

    def resources(self, stack_id: str, type_: str) -> list[dict]:
        return [
            r.get("Properties", {})
            for r in self.template(stack_id)["Resources"].values()
            if r["Type"] == type_
        ]


@pytest.fixture(scope="module", params=("dev", "prod"))
def deployed(request):
    settings = PLATFORM.environment(request.param)
    names = Names.for_environment(PLATFORM, settings, account=ACCOUNT)
    with mock_aws():

        def clients(service):
            return boto3.client(service, region_name=settings.region)

        first = provision.provision(PLATFORM, settings, names, clients)
        second = provision.provision(PLATFORM, settings, names, clients)
        assembly = Assembly(synth.assembly_dir(PLATFORM, settings.name, ACCOUNT))
        yield Deployed(request.param, settings, names, clients, first, second, assembly)


def test_every_resource_of_the_templates_is_applied_or_listed_with_its_reason(deployed):
    applied = {(a.stack, a.logical_id) for a in deployed.first.applied}
    unapplied = {(u.stack, u.logical_id): u for u in deployed.first.unapplied}
    assert not applied & set(unapplied)
    total = 0
    for stack in deployed.assembly.stacks.values():
        for lid, resource in stack.template["Resources"].items():
            if resource["Type"] == "AWS::CDK::Metadata":
                continue
            total += 1
            key = (stack.name, lid)
            assert key in applied or key in unapplied, f"{stack.name}/{lid} {resource['Type']}"
            if key in unapplied:
                assert len(unapplied[key].reason) > 20, unapplied[key]
    assert {u.type for u in unapplied.values()} <= UNAPPLIED_TYPES, unapplied
    assert len(applied) + len(unapplied) == total
    assert len(applied) > 250  # the platform, not a corner of it
    print(f"{deployed.env}: {len(applied)} of {total} resources applied; not applied:")
    for u in unapplied.values():
        print(f"  {u.stack}/{u.logical_id} ({u.type}): {u.reason}")


def test_a_second_deployment_makes_nothing_and_applies_the_same(deployed):
    assert deployed.first.created and not deployed.second.created
    assert deployed.second.notes == deployed.first.notes  # what is applied in part: said again
    assert [(a.stack, a.logical_id, a.physical_id) for a in deployed.second.applied] == [
        (a.stack, a.logical_id, a.physical_id) for a in deployed.first.applied
    ]


def test_local_names_equal_the_deployed_names(deployed):
    d = deployed
    s3, kinesis, firehose, glue, athena, kms = (
        d.clients(s) for s in ("s3", "kinesis", "firehose", "glue", "athena", "kms")
    )

    def names(stack_id: str, type_: str, *path: str) -> set:
        values = set()
        for props in d.resources(stack_id, type_):
            for step in path:
                props = props[step]
            values.add(props)
        return values

    lake = names("Storage", "AWS::S3::Bucket", "BucketName")
    assert lake == {d.names.bucket(zone) for zone in BUCKET_ZONES}
    assert lake <= {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert set(kinesis.list_streams()["StreamNames"]) == names(
        "Streaming", "AWS::Kinesis::Stream", "Name"
    )
    assert set(firehose.list_delivery_streams()["DeliveryStreamNames"]) == names(
        "Streaming", "AWS::KinesisFirehose::DeliveryStream", "DeliveryStreamName"
    )
    databases = {x["Name"] for x in glue.get_databases()["DatabaseList"]}
    assert names("Catalog", "AWS::Glue::Database", "DatabaseInput", "Name") <= databases
    assert set(glue.list_crawlers()["CrawlerNames"]) == names(
        "Catalog", "AWS::Glue::Crawler", "Name"
    )
    assert set(glue.list_jobs()["JobNames"]) == names("Catalog", "AWS::Glue::Job", "Name")
    assert d.names.workgroup in {w["Name"] for w in athena.list_work_groups()["WorkGroups"]}
    assert d.names.lake_key_alias in {a["AliasName"] for a in kms.list_aliases()["Aliases"]}


def test_lake_buckets_default_to_the_lake_key_and_are_versioned(deployed):
    s3, kms = deployed.clients("s3"), deployed.clients("kms")
    key_arn = kms.describe_key(KeyId=deployed.names.lake_key_alias)["KeyMetadata"]["Arn"]
    for zone in BUCKET_ZONES:
        bucket = deployed.names.bucket(zone)
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
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()), (bucket, block)
        if zone != "access-logs":  # its access logging is named as not switched on locally
            assert any(
                f"AWS::S3::Bucket {bucket}): server access logging to "
                f"{deployed.names.bucket('access-logs')} not switched on" in note
                for note in deployed.first.notes
            ), bucket


def test_local_lifecycle_rules_equal_the_deployed_ones(deployed):
    s3 = deployed.clients("s3")
    for props in deployed.resources("Storage", "AWS::S3::Bucket"):
        rules = props["LifecycleConfiguration"]["Rules"]
        bucket = props["BucketName"]
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
            if "AbortIncompleteMultipartUpload" in rule:
                assert (
                    mine["AbortIncompleteMultipartUpload"] == rule["AbortIncompleteMultipartUpload"]
                )


def test_local_tables_have_the_deployed_columns_locations_and_partitions(deployed):
    glue = deployed.clients("glue")
    tables = deployed.resources("Catalog", "AWS::Glue::Table")
    assert len(tables) == 3 * len(PLATFORM.datasets)  # raw, curated, quarantine
    databases = {
        lid: r["Properties"]["DatabaseInput"]["Name"]
        for lid, r in deployed.template("Catalog")["Resources"].items()
        if r["Type"] == "AWS::Glue::Database"
    }
    for props in tables:
        table = props["TableInput"]
        database = props["DatabaseName"]
        database = databases[database["Ref"]] if isinstance(database, dict) else database
        local = glue.get_table(DatabaseName=database, Name=table["Name"])["Table"]
        sd, mine = table["StorageDescriptor"], local["StorageDescriptor"]
        assert [(c["Name"], c["Type"]) for c in mine["Columns"]] == [
            (c["Name"], c["Type"]) for c in sd["Columns"]
        ]
        if "OpenTableFormatInput" in props:
            # an Iceberg table: moto in-process marks it so; the endpoint's Glue also writes
            # its metadata (tests/local/test_glue_iceberg_tables.py)
            parameters = local["Parameters"]
            assert parameters["table_type"].upper() == "ICEBERG"
            assert "PartitionKeys" not in local or local["PartitionKeys"] == []
            assert {k: str(v) for k, v in table.get("Parameters", {}).items()}.items() <= (
                parameters.items()
            )
            continue
        assert [p["Name"] for p in local["PartitionKeys"]] == [
            p["Name"] for p in table["PartitionKeys"]
        ]
        assert mine["SerdeInfo"]["SerializationLibrary"] == sd["SerdeInfo"]["SerializationLibrary"]
        assert mine["Location"].startswith("s3://" + deployed.names.prefix)
        assert local.get("Parameters", {}) == {
            k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in table.get("Parameters", {}).items()
        }


def test_job_code_is_deployed_where_the_glue_jobs_point_with_the_deployed_arguments(deployed):
    glue, s3 = deployed.clients("glue"), deployed.clients("s3")
    artifacts = deployed.names.artifacts_bucket
    for props in deployed.resources("Catalog", "AWS::Glue::Job"):
        job = glue.get_job(JobName=props["Name"])["Job"]
        script = job["Command"]["ScriptLocation"].removeprefix(f"s3://{artifacts}/")
        library = job["DefaultArguments"]["--extra-py-files"].removeprefix(f"s3://{artifacts}/")
        body = s3.get_object(Bucket=artifacts, Key=script)["Body"].read()
        assert b"from dataplatform.jobs.curate_run import main" in body
        head = s3.head_object(Bucket=artifacts, Key=library)
        assert head["ContentLength"] > 1000 and head["ServerSideEncryption"] == "aws:kms"
        for key, value in props["DefaultArguments"].items():
            if isinstance(value, str):  # the rest are joins over the bucket's reference
                assert job["DefaultArguments"][key] == value, key
        assert (job["MaxRetries"], job["Timeout"], job["SecurityConfiguration"]) == (
            props.get("MaxRetries", 0),
            props["Timeout"],
            props["SecurityConfiguration"]
            if isinstance(props["SecurityConfiguration"], str)
            else job["SecurityConfiguration"],
        )


def test_what_training_looks_up_is_the_network_the_stacks_define(deployed):
    """The AWS target's training code finds the VPC by its Name tag, its private subnets by
    CDK's subnet-type tag and the security group by name (runtime/aws/training.py)."""
    from dataplatform.runtime.aws.training import find_network

    ec2, iam = deployed.clients("ec2"), deployed.clients("iam")

    def tag(resource: dict, key: str):
        return next((t["Value"] for t in resource.get("Tags") or [] if t["Key"] == key), None)

    (vpc,) = deployed.resources("Network", "AWS::EC2::VPC")
    subnets, groups = find_network(ec2, deployed.names)
    local = ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
    private = {
        p["CidrBlock"]
        for p in deployed.resources("Network", "AWS::EC2::Subnet")
        if tag(p, "aws-cdk:subnet-type") == "Private"
    }
    assert {s["CidrBlock"] for s in local} == private
    assert len({s["AvailabilityZone"] for s in local}) == len(local)  # one per zone
    (local_vpc,) = ec2.describe_vpcs(VpcIds=[local[0]["VpcId"]])["Vpcs"]
    assert local_vpc["CidrBlock"] == vpc["CidrBlock"]
    assert ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"][0]["GroupName"] == (
        deployed.names.training_security_group
    )
    role = iam.get_role(RoleName=deployed.names.sagemaker_role)["Role"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}


def test_functions_run_their_asset_with_the_deployed_environment(deployed):
    lambdas = deployed.clients("lambda")
    by_name = {a.physical_id: a for a in deployed.first.find("AWS::Lambda::Function")}
    assert {deployed.names.quality_gate_function} <= set(by_name)
    for name, applied in by_name.items():
        props = next(
            r["Properties"]
            for r in deployed.template(
                next(s for s, st in deployed.assembly.stacks.items() if st.name == applied.stack)
            )["Resources"].values()
            if r["Type"] == "AWS::Lambda::Function"
            and r["Properties"].get("FunctionName", "") == name
        )
        configuration = lambdas.get_function(FunctionName=name)["Configuration"]
        assert (configuration["Handler"], configuration["Runtime"]) == (
            props["Handler"],
            props["Runtime"],
        )
        asset = deployed.assembly.asset_bytes(props["Code"]["S3Bucket"], props["Code"]["S3Key"])
        assert configuration["CodeSize"] == len(asset)
        variables = configuration.get("Environment", {}).get("Variables", {})
        for key, value in props.get("Environment", {}).get("Variables", {}).items():
            if isinstance(value, str):
                assert variables[key] == value, (name, key)
            else:  # a reference: resolved to something local, never a placeholder
                assert variables[key] and "<" not in variables[key], (name, key)


def test_the_state_machine_holds_the_synthesized_definition_with_local_ids(deployed):
    names, sfn, ec2 = deployed.names, deployed.clients("stepfunctions"), deployed.clients("ec2")
    described = sfn.describe_state_machine(stateMachineArn=names.ml_pipeline_arn)
    definition = json.loads(described["definition"])
    assert definition["StartAt"] == "InputDefaults"
    text = described["definition"]
    subnets = {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
    (template,) = deployed.resources("Orchestration", "AWS::StepFunctions::StateMachine")
    # the template's Join, its literal parts in order around the local ids
    position = 0
    for part in template["DefinitionString"]["Fn::Join"][1]:
        if isinstance(part, str):
            found = text.find(part, position)
            assert found >= 0, part[:80]
            position = found + len(part)
    used = {s for s in subnets if s in text}
    assert used, "the training jobs' VpcConfig names no local subnet"
    gate = f"arn:aws:lambda:{names.region}:{ACCOUNT}:function:{names.quality_gate_function}"
    assert gate in text


def test_a_deployment_that_fails_names_the_resource_and_the_next_one_finishes_it(monkeypatch):
    """A resource that fails to apply stops the deployment with the stack, the resource,
    its type and the service's error (CloudFormation's CREATE_FAILED); what was applied
    before it is recorded, so the next `dp local up` finishes the job without making a
    second of anything (one lake key, one VPC)."""
    from dataplatform.runtime.local.deploy import DeployError, resources

    settings = PLATFORM.environment("dev")
    names = Names.for_environment(PLATFORM, settings, account=ACCOUNT)
    real = resources.APPLIERS["AWS::Glue::Job"]

    def refused(d, r):
        raise RuntimeError("AccessDeniedException: glue:CreateJob refused")

    with mock_aws():

        def clients(service):
            return boto3.client(service, region_name=settings.region)

        monkeypatch.setitem(resources.APPLIERS, "AWS::Glue::Job", refused)
        with pytest.raises(DeployError) as failed:
            provision.provision(PLATFORM, settings, names, clients)
        message = str(failed.value)
        assert names.stack("catalog") in message and "(AWS::Glue::Job)" in message
        assert "glue:CreateJob refused" in message
        kms, ec2 = clients("kms"), clients("ec2")
        lake_key = kms.describe_key(KeyId=names.lake_key_alias)["KeyMetadata"]["KeyId"]
        monkeypatch.setitem(resources.APPLIERS, "AWS::Glue::Job", real)
        finished = provision.provision(PLATFORM, settings, names, clients)
        assert {a.type for a in finished.created} >= {"AWS::Glue::Job"}
        # the stacks applied before the failure make nothing again: the same lake key
        done_before = {names.stack("storage"), names.stack("streaming")}
        assert not [a for a in finished.created if a.stack in done_before]
        assert kms.describe_key(KeyId=names.lake_key_alias)["KeyMetadata"]["KeyId"] == lake_key
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [names.vpc]}])["Vpcs"]
        assert len(vpcs) == 1
