"""MlStack: what SageMaker training needs, per model of spec/models/: the execution role
scoped to its buckets, prefixes and key, the training jobs' security group in the private
subnets, a model package group per model, and each model's training-job definition (the
image resolved for the region by the sagemaker SDK; the request itself is built by
dataplatform.training_job, shared with `dp train`)."""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import layout, training_job
from dataplatform.naming import Names
from dataplatform.naming import pascal_case as _construct_id
from dataplatform.spec import Environment, Model
from stacks.constructs.lake import Lake
from stacks.constructs.nag import arn_token
from stacks.constructs.training_definition import TrainingDefinition
from stacks.network import NetworkStack
from training.metrics_contract import metric_definitions

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class MlStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        lake: Lake,
        network: NetworkStack,
        models: tuple[Model, ...],
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        features, models_bucket, artifacts = lake.features, lake.models, lake.artifacts
        image = training_job.image_uri(settings)
        image_account, image_repository = (
            image.split(".", 1)[0],
            image.split("/", 1)[1].split(":")[0],
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "TrainingSecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=True,
            security_group_name=names.training_security_group,
            description=f"{names.prefix} SageMaker training jobs (no inbound; S3 via the endpoint)",
        )
        self.role = iam.Role(
            self,
            "ExecutionRole",
            role_name=names.sagemaker_role,
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            description=f"SageMaker training of {names.prefix}: features -> models",
        )
        tables = sorted({m.features_table for m in models})
        model_names = sorted(m.name for m in models)
        statements = [
            (
                "ReadFeatures",
                ["s3:GetObject"],
                [features.arn_for_objects(f"{layout.features_prefix(t)}*") for t in tables],
            ),
            (
                "ReadTrainingSource",
                ["s3:GetObject"],
                [artifacts.arn_for_objects(layout.TRAINING_SOURCE_KEY)],
            ),
            (
                "WriteModelsAndCheckpoints",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [
                    models_bucket.arn_for_objects(f"{p}*")
                    for m in model_names
                    for p in (layout.model_prefix(m), layout.model_checkpoint_prefix(m))
                ],
            ),
            (
                "ListBuckets",
                ["s3:ListBucket", "s3:GetBucketLocation"],
                [features.bucket_arn, models_bucket.bucket_arn, artifacts.bucket_arn],
            ),
            (
                "UseLakeKey",
                [
                    "kms:Decrypt",
                    "kms:Encrypt",
                    "kms:GenerateDataKey",
                    "kms:CreateGrant",
                    "kms:DescribeKey",
                ],
                [lake.key.key_arn],
            ),
            (
                "PullTrainingImage",
                [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchGetImage",
                ],
                [
                    f"arn:{Aws.PARTITION}:ecr:{settings.region}:{image_account}:repository/{image_repository}"
                ],
            ),
            (
                "WriteTrainingLogs",
                [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                [
                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{TRAINING_LOG_GROUP}:*"
                ],
            ),
        ]
        for sid, actions, resources in statements:
            self.role.add_to_policy(
                iam.PolicyStatement(sid=sid, actions=actions, resources=resources)
            )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="EcrToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PublishTrainingMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": TRAINING_LOG_GROUP}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="DescribeTheVpc",
                actions=[
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups",
                ],
                resources=["*"],
            )
        )
        vpc_arn = f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}:vpc/{network.vpc.vpc_id}"
        # As AWS's own SageMaker VPC policies: the new network interface itself has no
        # ec2:Vpc key (AWS's condition-key tables: only its subnet and security groups do),
        # so it is allowed by its ARN, and the subnet and security groups it is created in
        # are limited to the platform VPC.
        region_account = f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="NewNetworkInterfaces",
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:CreateNetworkInterfacePermission",
                    "ec2:DeleteNetworkInterface",
                    "ec2:DeleteNetworkInterfacePermission",
                ],
                resources=[f"{region_account}:network-interface/*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="InSubnetsAndSecurityGroupsOfThePlatformVpc",
                actions=["ec2:CreateNetworkInterface"],
                resources=[f"{region_account}:subnet/*", f"{region_account}:security-group/*"],
                conditions={"ArnEquals": {"ec2:Vpc": vpc_arn}},
            )
        )

        self.package_groups = {
            m.name: sagemaker.CfnModelPackageGroup(
                self,
                f"{_construct_id(m.name)}PackageGroup",
                model_package_group_name=names.model_package_group(m.name),
                model_package_group_description=(m.description or m.name)[:1024],
            )
            for m in models
        }
        subnets = [s.subnet_id for s in network.private_subnets.subnets]
        self.training = {
            m.name: TrainingDefinition(
                model=m,
                image_uri=image,
                role_arn=self.role.role_arn,
                subnet_ids=subnets,
                security_group_ids=[self.security_group.security_group_id],
                key_arn=lake.key.key_arn,
                metric_definitions=metric_definitions(m.problem),
                package_group=names.model_package_group(m.name),
            )
            for m in models
        }

        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "object keys below the training inputs and outputs only: each model's "
                    "features table prefix, its model prefix and checkpoint prefix (a new "
                    "job folder per run)",
                    "appliesTo": [
                        *[
                            f"Resource::{arn_token(features)}/{layout.features_prefix(t)}*"
                            for t in tables
                        ],
                        *[
                            f"Resource::{arn_token(models_bucket)}/{p}*"
                            for m in model_names
                            for p in (layout.model_prefix(m), layout.model_checkpoint_prefix(m))
                        ],
                    ],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "SageMaker names a log stream per training job in its fixed log group "
                    f"{TRAINING_LOG_GROUP}",
                    "appliesTo": [
                        f"Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
                        f"log-group:{TRAINING_LOG_GROUP}:*"
                    ],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "no resource-level permissions exist for ecr:GetAuthorizationToken, "
                    "cloudwatch:PutMetricData (limited to SageMaker's namespace by condition) "
                    "and ec2:Describe*",
                    "appliesTo": ["Resource::*"],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "SageMaker creates a new network interface per training instance (its "
                    "id is unknown before); the subnets and security groups it may use are "
                    "limited to the platform VPC by the ec2:Vpc condition",
                    "appliesTo": [
                        f"Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:{r}/*"
                        for r in ("network-interface", "subnet", "security-group")
                    ],
                },
            ],
            apply_to_children=True,
        )
