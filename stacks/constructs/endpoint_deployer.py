"""One served model's endpoint, rolled on approval: an EventBridge rule on the default bus
for the approval of a package of the model's group, the deployer Lambda it invokes
(lambdas/endpoint_deployer: Model, EndpointConfig, CreateEndpoint or UpdateEndpoint), its
dead-letter queue, and what the SageMaker execution role needs beyond training to serve
(the endpoint's log group, data capture).

The endpoint itself is not a CloudFormation resource: it exists once a package is
approved, and follows each approval without a deployment."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import layout
from dataplatform.naming import Names
from dataplatform.serving import deployer_environment
from dataplatform.spec import Environment, Model
from stacks.constructs import checkov
from stacks.constructs.iam_dependency import wait_for_role_policy
from stacks.constructs.log_group import EncryptedLogGroup
from stacks.constructs.nag import arn_token, xray_tracing_suppression
from stacks.constructs.queue import encrypted_queue
from stacks.constructs.removal import DataRemoval

DEPLOYER_RUNTIME = lambda_.Runtime.PYTHON_3_14  # as the platform's other functions
APPROVAL_SOURCE = "aws.sagemaker"
APPROVAL_DETAIL_TYPE = "SageMaker Model Package State Change"
# The deployer waits up to 10 minutes for an endpoint that is still creating or updating.
TIMEOUT = Duration.minutes(15)
# SageMaker's endpoint instance metrics (CPU, memory, disk), published with the model's role.
ENDPOINT_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"


def sagemaker_arn(resource: str) -> str:
    return f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"


class EndpointDeployer(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model: Model,
        names: Names,
        settings: Environment,
        lake_key: kms.IKey,
        models_bucket: s3.IBucket,
        queue_key: kms.IKey,
        sagemaker_role: iam.IRole,
        subnet_ids: list[str],
        security_group: ec2.ISecurityGroup,
        removal: DataRemoval,
        code_dir: Path,
    ) -> None:
        super().__init__(scope, construct_id)
        serving = model.serving
        if serving is None:
            raise ValueError(f"model {model.name} declares no serving section")
        m = model.name
        endpoint = names.endpoint(m)
        group = names.model_package_group(m)
        instance = serving.mode == "instance"
        versions = f"{endpoint}-v*"  # the Models and EndpointConfigs, one per package version
        arns = {
            "package": sagemaker_arn(f"model-package/{group}/*"),
            "model": sagemaker_arn(f"model/{versions}"),
            "config": sagemaker_arn(f"endpoint-config/{versions}"),
            "endpoint": sagemaker_arn(f"endpoint/{endpoint}"),
        }

        self.dlq = encrypted_queue(
            self, "DeadLetters", queue_name=names.deployer_dlq(m), key=queue_key, removal=removal
        )
        self.logs = EncryptedLogGroup(
            self,
            "Logs",
            log_group_name=names.deployer_log_group(m),
            key=lake_key,
            retention_days=settings.log_retention_days,
            removal_policy=removal.policy,
        )
        # Where SageMaker writes the endpoint's container logs: created here, so they are
        # encrypted and expire like the platform's other logs.
        self.endpoint_logs = EncryptedLogGroup(
            self,
            "EndpointLogs",
            log_group_name=names.endpoint_log_group(m),
            key=lake_key,
            retention_days=settings.log_retention_days,
            removal_policy=removal.policy,
        )

        self.role = iam.Role(
            self,
            "Role",
            role_name=names.deployer_role(m),
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Rolls {endpoint} to each newly approved package of {group}",
        )
        statements = [
            iam.PolicyStatement(
                sid="ReadTheApprovedPackage",
                actions=["sagemaker:DescribeModelPackage"],
                resources=[arns["package"]],
            ),
            iam.PolicyStatement(
                sid="CreateTheModelVersions",
                actions=["sagemaker:CreateModel", "sagemaker:DescribeModel"],
                resources=[arns["model"]],
            ),
            iam.PolicyStatement(
                sid="CreateTheEndpointConfigs",
                actions=["sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig"],
                resources=[arns["config"]],
            ),
            iam.PolicyStatement(
                # AWS checks both the endpoint and the configuration it is given
                sid="RollTheEndpoint",
                actions=["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"],
                resources=[arns["endpoint"], arns["config"]],
            ),
            iam.PolicyStatement(
                sid="DescribeTheEndpoint",
                actions=["sagemaker:DescribeEndpoint"],
                resources=[arns["endpoint"]],
            ),
            iam.PolicyStatement(
                sid="TagWhatItCreates",
                actions=["sagemaker:AddTags"],
                resources=[arns["model"], arns["config"], arns["endpoint"]],
            ),
            iam.PolicyStatement(
                sid="PassTheExecutionRoleToSageMaker",
                actions=["iam:PassRole"],
                resources=[sagemaker_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="UseTheQueueKey",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[queue_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"sqs.{Aws.REGION}.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="WriteLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.logs.log_group_arn],
            ),
        ]
        if instance:
            # An instance endpoint's volume and captured data are encrypted with the lake
            # key: SageMaker creates grants on it for the endpoint, as its caller.
            statements += [
                iam.PolicyStatement(
                    sid="GrantTheLakeKeyToTheEndpoint",
                    actions=["kms:CreateGrant"],
                    resources=[lake_key.key_arn],
                    conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
                ),
                iam.PolicyStatement(
                    sid="DescribeTheLakeKey",
                    actions=["kms:DescribeKey"],
                    resources=[lake_key.key_arn],
                ),
            ]
        for statement in statements:
            self.role.add_to_policy(statement)

        # What the endpoint's containers do with the SageMaker execution role (the ML stack
        # gives it what training needs): log, publish instance metrics, capture data.
        capture_prefix = layout.data_capture_prefix(m)
        self.sagemaker_policy = iam.Policy(
            self,
            "ExecutionRoleServes",
            statements=[
                iam.PolicyStatement(
                    sid="WriteEndpointLogs",
                    actions=[
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    resources=[self.endpoint_logs.log_group_arn],
                ),
                iam.PolicyStatement(
                    sid="PublishEndpointMetrics",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={
                        "StringEquals": {"cloudwatch:namespace": ENDPOINT_METRICS_NAMESPACE}
                    },
                ),
                iam.PolicyStatement(
                    sid="CaptureData",
                    actions=["s3:PutObject"],
                    resources=[models_bucket.arn_for_objects(f"{capture_prefix}*")],
                ),
            ],
        )
        self.sagemaker_policy.attach_to_role(sagemaker_role)

        environment = deployer_environment(
            model,
            names,
            role_arn=sagemaker_role.role_arn,
            subnet_ids=subnet_ids,
            security_group_id=security_group.security_group_id,
            models_bucket=models_bucket.bucket_name,
            key_arn=lake_key.key_arn,
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=names.deployer_function(m),
            description=f"Rolls {endpoint} to the latest approved package of {group}",
            runtime=DEPLOYER_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(code_dir)),
            role=self.role,
            environment=environment,
            environment_encryption=lake_key,
            timeout=TIMEOUT,
            memory_size=256,
            log_group=self.logs,
            # one rollout at a time: a second approval waits (Lambda retries throttled
            # asynchronous invocations) instead of racing the first one's UpdateEndpoint
            reserved_concurrent_executions=1,
            dead_letter_queue=self.dlq,
            retry_attempts=2,
            max_event_age=Duration.hours(6),
            tracing=lambda_.Tracing.ACTIVE,
        )
        wait_for_role_policy(self.function, self.role)
        checkov.skip(
            self.function,
            "CKV_AWS_117",
            "the deployer only calls the SageMaker control plane (Describe/Create/Update of "
            "models, endpoint configurations and the endpoint): nothing in the VPC to reach",
        )

        self.rule = events.Rule(
            self,
            "Approved",
            rule_name=names.approval_rule(m),
            description=f"an approved package of {group}: roll {endpoint} to it",
            event_pattern=events.EventPattern(
                source=[APPROVAL_SOURCE],
                detail_type=[APPROVAL_DETAIL_TYPE],
                detail={"ModelPackageGroupName": [group], "ModelApprovalStatus": ["Approved"]},
            ),
        )
        self.rule.add_target(
            targets.LambdaFunction(
                self.function,
                dead_letter_queue=self.dlq,
                retry_attempts=4,
                max_event_age=Duration.hours(6),
            )
        )

        NagSuppressions.add_resource_suppressions(
            self.role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": f"{endpoint}'s Models and EndpointConfigs are named "
                    f"{endpoint}-v<package version>, one per approved package of {group} "
                    "(versions unknown before approval); DescribeModelPackage reads that "
                    "group's packages only",
                    "appliesTo": [
                        f"Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
                        f"<AWS::AccountId>:{r}"
                        for r in (
                            f"model-package/{group}/*",
                            f"model/{versions}",
                            f"endpoint-config/{versions}",
                        )
                    ],
                },
                xray_tracing_suppression(),
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.sagemaker_policy,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": f"{endpoint} writes captured requests and responses under "
                    f"{capture_prefix} of the models bucket only (SageMaker makes the object "
                    "keys, per endpoint, variant and hour)",
                    "appliesTo": [f"Resource::{arn_token(models_bucket)}/{capture_prefix}*"],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "cloudwatch:PutMetricData has no resource types; the statement is "
                    f"limited to SageMaker's endpoint namespace {ENDPOINT_METRICS_NAMESPACE}",
                    "appliesTo": ["Resource::*"],
                },
            ],
        )
        NagSuppressions.add_resource_suppressions(
            self.dlq,
            [
                {
                    "id": "AwsSolutions-SQS3",
                    "reason": f"{names.deployer_dlq(m)} is itself the dead-letter queue of the "
                    "deployer (its failed asynchronous invocations) and of the approval rule's "
                    "target (events EventBridge could not deliver)",
                }
            ],
        )
