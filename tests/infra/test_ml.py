"""MlStack: the SageMaker execution role scoped to its buckets, prefixes and key, the
training security group, one model package group per model, and the training definitions
(image for the region, spot with checkpoints, encryption, VPC, metric definitions)."""

from __future__ import annotations

from dataplatform import layout, training_job
from tests.infra.conftest import Synth, lake_key, resolve, s3_arn
from training.metrics_contract import metric_definitions


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def statements(synth: Synth) -> dict[str, dict]:
    (role_lid,) = [
        lid
        for lid, r in synth.resources("ml", "AWS::IAM::Role").items()
        if r["Properties"]["RoleName"] == synth.names.sagemaker_role
    ]
    found = {}
    for policy in synth.resources("ml", "AWS::IAM::Policy").values():
        if {"Ref": role_lid} in policy["Properties"]["Roles"]:
            for s in as_list(policy["Properties"]["PolicyDocument"]["Statement"]):
                found[s["Sid"]] = s
    return found


def resources_of(synth: Synth, statement: dict) -> list[str]:
    return sorted(resolve(synth, r) for r in as_list(statement["Resource"]))


def test_model_package_group_per_model(each_env):
    groups = sorted(
        r["Properties"]["ModelPackageGroupName"]
        for r in each_env.resources("ml", "AWS::SageMaker::ModelPackageGroup").values()
    )
    assert groups == sorted(
        each_env.names.model_package_group(m.name) for m in each_env.platform.models
    )
    assert len(groups) == 3  # churn, clv, house_prices


def test_execution_role_reads_features_writes_its_models_and_uses_the_key(each_env):
    names, models = each_env.names, each_env.platform.models
    found = statements(each_env)
    features, models_bucket, artifacts = (
        s3_arn(names.features_bucket),
        s3_arn(names.models_bucket),
        s3_arn(names.artifacts_bucket),
    )
    assert resources_of(each_env, found["ReadFeatures"]) == sorted(
        f"{features}/{layout.features_prefix(m.features_table)}*" for m in models
    )
    assert resources_of(each_env, found["ReadTrainingSource"]) == [
        f"{artifacts}/{layout.TRAINING_SOURCE_KEY}"
    ]
    assert resources_of(each_env, found["WriteModelsAndCheckpoints"]) == sorted(
        f"{models_bucket}/{p}*"
        for m in models
        for p in (layout.model_prefix(m.name), layout.model_checkpoint_prefix(m.name))
    )
    assert resources_of(each_env, found["UseLakeKey"]) == [lake_key(each_env)]
    image = training_job.image_uri(each_env.platform.environment(each_env.env))
    repository = image.split("/", 1)[1].split(":")[0]
    (ecr,) = resources_of(each_env, found["PullTrainingImage"])
    assert ecr.endswith(f":repository/{repository}")
    # Resource "*" only where AWS has no resource-level permissions, and ENIs stay in the VPC
    for sid, s in found.items():
        if "*" in as_list(s["Resource"]):
            assert sid in {"EcrToken", "PublishTrainingMetrics", "DescribeTheVpc"}, sid
    # which network interfaces, subnets and security groups: tests/infra/test_contracts.py
    assert (
        "ec2:Vpc" in found["InSubnetsAndSecurityGroupsOfThePlatformVpc"]["Condition"]["ArnEquals"]
    )
    assert found["PublishTrainingMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}
    }


def test_training_definition_is_encrypted_spot_in_the_vpc_with_metric_definitions(each_env):
    settings = each_env.platform.environment(each_env.env)
    ml = each_env.stacks.ml
    for model in each_env.platform.models:
        definition = ml.training[model.name]
        request = definition.request(each_env.names, settings, job_name="job-1")
        assert request["AlgorithmSpecification"]["TrainingImage"] == training_job.image_uri(
            settings
        )
        assert "sagemaker-scikit-learn:" in request["AlgorithmSpecification"]["TrainingImage"]
        assert f".{settings.region}." in request["AlgorithmSpecification"]["TrainingImage"]
        assert request["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions(
            model.problem
        )
        assert request["ResourceConfig"]["InstanceType"] == settings.sagemaker.instance_type
        assert (
            request["ResourceConfig"]["VolumeKmsKeyId"] == request["OutputDataConfig"]["KmsKeyId"]
        )
        assert request["EnableInterContainerTrafficEncryption"] is True
        assert request["EnableManagedSpotTraining"] is settings.sagemaker.use_spot_instances
        assert request["CheckpointConfig"]["S3Uri"] == (
            f"s3://{each_env.names.models_bucket}/{layout.model_checkpoint_prefix(model.name)}"
        )
        assert request["StoppingCondition"] == {
            "MaxRuntimeInSeconds": settings.sagemaker.max_runtime_minutes * 60,
            "MaxWaitTimeInSeconds": settings.sagemaker.max_wait_minutes * 60,
        }
        assert len(request["VpcConfig"]["Subnets"]) == settings.network.max_azs
        assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == (
            f"s3://{each_env.names.features_bucket}/{model.features_table}/"
        )
        assert request["OutputDataConfig"]["S3OutputPath"] == (
            f"s3://{each_env.names.models_bucket}/{model.name}/"
        )


def test_training_security_group_has_no_inbound_rules(each_env):
    (group,) = each_env.resources("ml", "AWS::EC2::SecurityGroup").values()
    assert not group["Properties"].get("SecurityGroupIngress")
    # `dp train --target aws` finds it by this name
    assert group["Properties"]["GroupName"] == each_env.names.training_security_group
