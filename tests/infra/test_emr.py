"""EmrStack: the security profile (security configuration, roles, security groups, log
location), the compute profile (release, instance groups, scaling, auto-termination,
classifications), the long-running cluster where the environment asks for one, and the
transient-cluster definition Step Functions uses. Expected values come from the spec."""

from __future__ import annotations

import pytest
from aws_cdk import App

from dataplatform import layout
from dataplatform.spec import load_spec
from stacks.constructs.emr_cluster import EMR_MANAGED_TAG, GLUE_METASTORE_FACTORY, PYSPARK_PYTHON
from stacks.platform import REPO_ROOT, build_platform, cdk_json_context
from tests.infra.conftest import Synth, lake_key, resolve, s3_arn

SPEC = load_spec(REPO_ROOT / "spec")


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def resources(synth: Synth, type_: str) -> dict[str, dict]:
    return synth.resources("emr", type_)


def only(synth: Synth, type_: str) -> tuple[str, dict]:
    (item,) = resources(synth, type_).items()
    return item[0], item[1]["Properties"]


def network_export(synth: Synth, value: dict) -> dict:
    """What an Fn::ImportValue from the network stack stands for there."""
    name = value["Fn::ImportValue"]
    for output in synth.templates["network"]["Outputs"].values():
        if output.get("Export", {}).get("Name") == name:
            return output["Value"]
    raise AssertionError(f"{name} is not exported by the network stack")


def private_subnet_ids(synth: Synth) -> set[str]:
    return {
        lid
        for lid, r in synth.resources("network", "AWS::EC2::Subnet").items()
        if {"Key": "aws-cdk:subnet-type", "Value": "Private"} in r["Properties"]["Tags"]
    }


def role(synth: Synth, role_name: str) -> tuple[str, dict]:
    (item,) = [
        (lid, r["Properties"])
        for lid, r in resources(synth, "AWS::IAM::Role").items()
        if r["Properties"]["RoleName"] == role_name
    ]
    return item


def statements(synth: Synth, role_name: str) -> dict[str, dict]:
    lid, _ = role(synth, role_name)
    found = {}
    for policy in resources(synth, "AWS::IAM::Policy").values():
        if {"Ref": lid} in policy["Properties"]["Roles"]:
            for s in as_list(policy["Properties"]["PolicyDocument"]["Statement"]):
                # CDK's EmrCreateCluster (the pipeline's transient cluster) adds an unnamed
                # iam:PassRole of the instance role to the service role; nothing else is unnamed.
                if "Sid" not in s:
                    instance_lid, _ = role(synth, synth.names.emr_instance_role)
                    assert s == {
                        "Action": "iam:PassRole",
                        "Effect": "Allow",
                        "Resource": {"Fn::GetAtt": [instance_lid, "Arn"]},
                    }, s
                    continue
                found[s["Sid"]] = s
    return found


def resolved(synth: Synth, statement: dict) -> list[str]:
    return sorted(resolve(synth, r) for r in as_list(statement["Resource"]))


# ----------------------------------------------------------------------------- security profile


def security_document(synth: Synth) -> dict:
    _, props = only(synth, "AWS::EMR::SecurityConfiguration")
    assert props["Name"] == synth.names.emr_security_configuration
    return props["SecurityConfiguration"]


def test_security_configuration_encrypts_s3_and_local_disks_with_the_lake_key(each_env):
    doc = security_document(each_env)["EncryptionConfiguration"]
    assert doc["EnableAtRestEncryption"] is True
    at_rest = doc["AtRestEncryptionConfiguration"]
    assert at_rest["S3EncryptionConfiguration"]["EncryptionMode"] == "SSE-KMS"
    assert resolve(each_env, at_rest["S3EncryptionConfiguration"]["AwsKmsKey"]) == lake_key(
        each_env
    )
    disks = at_rest["LocalDiskEncryptionConfiguration"]
    assert disks["EncryptionKeyProviderType"] == "AwsKms"
    assert resolve(each_env, disks["AwsKmsKey"]) == lake_key(each_env)
    assert disks["EnableEbsEncryption"] is True


def test_in_transit_encryption_follows_the_environment(dev, prod):
    assert dev.platform.environment("dev").emr.in_transit_encryption is False
    assert security_document(dev)["EncryptionConfiguration"]["EnableInTransitEncryption"] is False
    assert (
        "InTransitEncryptionConfiguration" not in security_document(dev)["EncryptionConfiguration"]
    )
    doc = security_document(prod)["EncryptionConfiguration"]
    assert doc["EnableInTransitEncryption"] is True
    tls = doc["InTransitEncryptionConfiguration"]["TLSCertificateConfiguration"]
    assert tls == {
        "CertificateProviderType": "PEM",
        "S3Object": f"s3://{prod.names.artifacts_bucket}/{layout.EMR_TLS_CERTIFICATES_KEY}",
    }


def test_nodes_require_imdsv2(each_env):
    assert security_document(each_env)["InstanceMetadataServiceConfiguration"] == {
        "MinimumInstanceMetadataServiceVersion": 2,
        "HttpPutResponseHopLimit": 1,
    }


def test_service_role_uses_emrs_scoped_policy_and_passes_only_the_instance_role(each_env):
    names = each_env.names
    _, props = role(each_env, names.emr_service_role)
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "elasticmapreduce.amazonaws.com"}
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    assert [resolve(each_env, a) for a in props["ManagedPolicyArns"]] == [
        "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
    ]
    found = statements(each_env, names.emr_service_role)
    instance_role_lid, _ = role(each_env, names.emr_instance_role)
    assert found["PassTheInstanceRole"]["Action"] == "iam:PassRole"
    assert found["PassTheInstanceRole"]["Resource"] == {"Fn::GetAtt": [instance_role_lid, "Arn"]}
    assert found["PassTheInstanceRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}
    }
    assert resolved(each_env, found["EncryptLocalDisks"]) == [lake_key(each_env)]


def test_instance_role_is_scoped_to_the_lake_prefixes_tables_and_key(each_env):
    names = each_env.names
    _, props = role(each_env, names.emr_instance_role)
    assert props["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"
    }
    assert not props.get("ManagedPolicyArns")
    found = statements(each_env, names.emr_instance_role)
    curated, features, artifacts = (
        s3_arn(names.curated_bucket),
        s3_arn(names.features_bucket),
        s3_arn(names.artifacts_bucket),
    )
    datasets = sorted(d.name for d in SPEC.datasets)
    assert resolved(each_env, found["ReadCurated"]) == sorted(
        f"{curated}/{layout.curated_prefix(d)}*" for d in datasets
    )
    assert found["ReadCurated"]["Action"] == "s3:GetObject"
    assert resolved(each_env, found["WriteFeatures"]) == [f"{features}/*"]
    assert resolved(each_env, found["ReadCodeAndCertificates"]) == sorted(
        [f"{artifacts}/{layout.CODE_PREFIX}*", f"{artifacts}/{layout.EMR_TLS_CERTIFICATES_KEY}"]
    )
    assert resolved(each_env, found["WriteLogs"]) == [f"{artifacts}/{layout.EMR_LOG_PREFIX}*"]
    assert resolved(each_env, found["UseLakeKey"]) == [lake_key(each_env)]
    # the catalog: read the curated tables, write only the features database
    read = resolved(each_env, found["ReadCuratedCatalog"])
    assert all(f"table/{names.curated_database}/" in r for r in read if ":table/" in r)
    assert sorted(r.rsplit("/", 1)[1] for r in read if ":table/" in r) == datasets
    write = resolved(each_env, found["WriteFeaturesCatalog"])
    assert [r for r in write if ":table/" in r] == [
        f"arn:${{AWS::Partition}}:glue:${{AWS::Region}}:${{AWS::AccountId}}:table/{names.features_database}/*"
    ]
    assert not any(
        "Create" in a or "Update" in a or "Delete" in a
        for a in as_list(found["ReadCuratedCatalog"]["Action"])
    )
    # nothing broader anywhere
    for s in found.values():
        assert s["Effect"] == "Allow"
        assert not any(a == "*" or a.endswith(":*") for a in as_list(s["Action"])), s
        assert "*" not in as_list(s["Resource"]), s
    _, profile = only(each_env, "AWS::IAM::InstanceProfile")
    assert profile["InstanceProfileName"] == names.emr_instance_profile
    assert profile["Roles"] == [{"Ref": role(each_env, names.emr_instance_role)[0]}]


def test_security_groups_are_emr_managed_tagged_and_closed_to_the_world(each_env):
    groups = resources(each_env, "AWS::EC2::SecurityGroup")
    assert len(groups) == 3
    for lid, r in groups.items():
        props = r["Properties"]
        assert {"Key": EMR_MANAGED_TAG[0], "Value": EMR_MANAGED_TAG[1]} in props["Tags"], lid
        assert not props.get("SecurityGroupIngress"), lid
        assert network_export(each_env, props["VpcId"]) == {
            "Ref": next(iter(each_env.resources("network", "AWS::EC2::VPC")))
        }
    (service,) = [r["Properties"] for lid, r in groups.items() if "ServiceAccess" in lid]
    # no egress to the internet from the service-access group (EMR adds its own rule)
    assert all(e.get("CidrIp") != "0.0.0.0/0" for e in service.get("SecurityGroupEgress", []))


# ----------------------------------------------------------------------------- the cluster


def cluster(synth: Synth) -> dict:
    _, props = only(synth, "AWS::EMR::Cluster")
    return props


def test_long_running_cluster_only_where_the_environment_asks(dev, prod):
    assert dev.platform.environment("dev").emr.long_running is True
    assert len(resources(dev, "AWS::EMR::Cluster")) == 1
    assert "ClusterId" in dev.templates["emr"]["Outputs"]
    assert prod.platform.environment("prod").emr.long_running is False
    assert resources(prod, "AWS::EMR::Cluster") == {}
    assert "ClusterId" not in prod.templates["emr"].get("Outputs", {})


def test_cluster_instance_groups_markets_and_counts(dev):
    emr = dev.platform.environment("dev").emr
    instances = cluster(dev)["Instances"]
    master, core = instances["MasterInstanceGroup"], instances["CoreInstanceGroup"]
    (task,) = instances["TaskInstanceGroups"]
    assert (master["InstanceCount"], master["Market"], master["InstanceType"]) == (
        1,
        "ON_DEMAND",
        emr.master_instance_type,
    )
    assert (core["InstanceCount"], core["Market"], core["InstanceType"]) == (
        emr.core_instance_count,
        "ON_DEMAND",
        emr.core_instance_type,
    )
    assert core["EbsConfiguration"]["EbsBlockDeviceConfigs"] == [
        {
            "VolumeSpecification": {"SizeInGB": emr.core_ebs_gib, "VolumeType": "gp3"},
            "VolumesPerInstance": 1,
        }
    ]
    assert (task["InstanceCount"], task["Market"], task["InstanceType"]) == (
        emr.task_instance_count,
        "SPOT",
        emr.task_instance_type,
    )
    print(
        f"dev instance groups: MASTER 1x{master['InstanceType']} ON_DEMAND, CORE "
        f"{core['InstanceCount']}x{core['InstanceType']} ON_DEMAND gp3 {emr.core_ebs_gib} GiB, "
        f"TASK {task['InstanceCount']}x{task['InstanceType']} SPOT"
    )


def test_cluster_runs_in_a_private_subnet_with_the_emr_security_groups_and_no_ssh(dev):
    instances = cluster(dev)["Instances"]
    subnet = network_export(dev, instances["Ec2SubnetId"])
    assert subnet["Ref"] in private_subnet_ids(dev)
    groups = resources(dev, "AWS::EC2::SecurityGroup")
    for key in (
        "EmrManagedMasterSecurityGroup",
        "EmrManagedSlaveSecurityGroup",
        "ServiceAccessSecurityGroup",
    ):
        assert instances[key]["Fn::GetAtt"][0] in groups
    assert "Ec2KeyName" not in instances
    assert "KerberosAttributes" not in cluster(dev)
    assert instances["KeepJobFlowAliveWhenNoSteps"] is True


def test_cluster_release_applications_scaling_and_auto_termination(dev):
    emr = dev.platform.environment("dev").emr
    props = cluster(dev)
    assert props["Name"] == dev.names.emr_cluster
    assert props["ReleaseLabel"] == emr.release_label and props["ReleaseLabel"].startswith("emr-7.")
    assert [a["Name"] for a in props["Applications"]] == list(emr.applications)
    assert props["ManagedScalingPolicy"]["ComputeLimits"] == {
        "UnitType": "Instances",
        "MinimumCapacityUnits": emr.min_capacity,
        "MaximumCapacityUnits": emr.max_capacity,
        "MaximumOnDemandCapacityUnits": emr.max_on_demand_capacity,
        "MaximumCoreCapacityUnits": emr.core_instance_count,
    }
    assert props["AutoTerminationPolicy"] == {"IdleTimeout": emr.idle_timeout_minutes * 60}


def test_cluster_logs_security_configuration_and_roles(dev):
    props = cluster(dev)
    assert props["LogUri"] == f"s3://{dev.names.artifacts_bucket}/{layout.EMR_LOG_PREFIX}"
    assert resolve(dev, props["LogEncryptionKmsKeyId"]) == lake_key(dev)
    assert props["SecurityConfiguration"] == dev.names.emr_security_configuration
    profile_lid, _ = only(dev, "AWS::IAM::InstanceProfile")
    assert props["JobFlowRole"] == {"Ref": profile_lid}
    service_lid, _ = role(dev, dev.names.emr_service_role)
    assert props["ServiceRole"] == {"Fn::GetAtt": [service_lid, "Arn"]}
    (resource,) = resources(dev, "AWS::EMR::Cluster").values()
    for lid in (profile_lid, service_lid, only(dev, "AWS::EMR::SecurityConfiguration")[0]):
        assert lid in resource["DependsOn"]


def test_cluster_uses_the_glue_catalog_and_tuned_spark(dev):
    configs = {c["Classification"]: c for c in cluster(dev)["Configurations"]}
    assert configs["spark-hive-site"]["ConfigurationProperties"] == {
        "hive.metastore.client.factory.class": GLUE_METASTORE_FACTORY
    }
    spark = configs["spark-defaults"]["ConfigurationProperties"]
    assert spark["spark.dynamicAllocation.enabled"] == "true"
    assert spark["spark.sql.adaptive.enabled"] == "true"
    assert spark["spark.sql.adaptive.skewJoin.enabled"] == "true"
    assert spark["spark.sql.sources.partitionOverwriteMode"] == "dynamic"
    (export,) = configs["spark-env"]["Configurations"]
    assert export == {
        "Classification": "export",
        "ConfigurationProperties": {"PYSPARK_PYTHON": PYSPARK_PYTHON},
    }


# ----------------------------------------------------------------------------- transient


@pytest.fixture(scope="module")
def transient_prod(tmp_path_factory):
    """The EmrCreateCluster state Step Functions will use, built from prod's profiles."""
    app = App(outdir=str(tmp_path_factory.mktemp("transient")), context=cdk_json_context())
    stacks = build_platform(app, SPEC, env_name="prod", account="123456789012", destroy_data=False)
    task = stacks.emr.definition.create_cluster_task(
        stacks.emr, "CreateCluster", name="mldp-prod-pipeline", tags=stacks.names.tags
    )
    return stacks, task.to_state_json()


def test_transient_definition_matches_the_compute_and_security_profiles(transient_prod):
    stacks, state = transient_prod
    emr = SPEC.environment("prod").emr
    assert state["Resource"].endswith(":elasticmapreduce:createCluster.sync")
    params = stacks.emr.resolve(state["Parameters"])
    assert params["ReleaseLabel"] == emr.release_label
    security = stacks.emr.security
    assert params["SecurityConfiguration"] == {
        "Ref": stacks.emr.get_logical_id(security.security_configuration)
    }
    assert params["ServiceRole"] == {
        "Ref": stacks.emr.get_logical_id(security.service_role.node.default_child)
    }
    assert params["LogUri"] == f"s3://{stacks.names.artifacts_bucket}/{layout.EMR_LOG_PREFIX}"
    groups = {g["InstanceRole"]: g for g in params["Instances"]["InstanceGroups"]}
    assert (groups["MASTER"]["InstanceCount"], groups["MASTER"]["Market"]) == (1, "ON_DEMAND")
    assert (groups["CORE"]["InstanceCount"], groups["CORE"]["Market"]) == (
        emr.core_instance_count,
        "ON_DEMAND",
    )
    assert groups["CORE"]["EbsConfiguration"]["EbsBlockDeviceConfigs"][0][
        "VolumeSpecification"
    ] == {"SizeInGB": emr.core_ebs_gib, "VolumeType": "gp3"}
    assert (groups["TASK"]["InstanceCount"], groups["TASK"]["Market"]) == (
        emr.task_instance_count,
        "SPOT",
    )
    assert (
        params["ManagedScalingPolicy"]["ComputeLimits"]["MaximumCapacityUnits"] == emr.max_capacity
    )
    assert params["AutoTerminationPolicy"] == {"IdleTimeout": emr.idle_timeout_minutes * 60}
    configs = {c["Classification"]: c for c in params["Configurations"]}
    assert configs["spark-hive-site"]["Properties"] == {
        "hive.metastore.client.factory.class": GLUE_METASTORE_FACTORY
    }
    assert "Ec2KeyName" not in params["Instances"]
    # the cost-allocation tags CloudFormation gives the long-running cluster, and the
    # transient cluster's own
    assert {t["Key"]: t["Value"] for t in params["Tags"]} == {
        "project": "mldp",
        "environment": "prod",
        EMR_MANAGED_TAG[0]: EMR_MANAGED_TAG[1],
        "dataplatform:cluster": "mldp-prod-pipeline",
    }
    print(
        "prod instance groups: "
        + ", ".join(
            f"{r} {g['InstanceCount']}x{g['InstanceType']} {g['Market']}" for r, g in groups.items()
        )
    )
