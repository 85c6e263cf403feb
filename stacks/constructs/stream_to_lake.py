"""One streaming dataset's path into the raw zone:
Kinesis Data Stream -> Firehose (transform Lambda, dynamic partitioning) -> s3://raw/<dataset>/."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import layout
from dataplatform.naming import Names
from dataplatform.spec import Dataset, Environment
from stacks.constructs import checkov
from stacks.constructs.iam_dependency import wait_for_role_policy
from stacks.constructs.lake import Lake
from stacks.constructs.log_group import EncryptedLogGroup
from stacks.constructs.nag import arn_token, xray_tracing_suppression
from stacks.constructs.removal import DataRemoval

TRANSFORM_RUNTIME = lambda_.Runtime.PYTHON_3_14
# Firehose hands the Lambda at most this much per invocation (0.2-3 MB allowed); 1 MB keeps
# the base64 response far below Lambda's 6 MB limit.
TRANSFORM_BUFFER_MB = 1
DELIVERY_LOG_STREAM = "DestinationDelivery"


class StreamToLake(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dataset: Dataset,
        names: Names,
        settings: Environment,
        lake: Lake,
        removal: DataRemoval,
        transform_code_dir: Path,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        ds = dataset.name
        kinesis_settings = settings.kinesis

        provisioned = kinesis_settings.capacity_mode == "provisioned"
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_name=names.stream(ds),
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=lake.key,
            stream_mode=(
                kinesis.StreamMode.PROVISIONED if provisioned else kinesis.StreamMode.ON_DEMAND
            ),
            shard_count=kinesis_settings.shard_count if provisioned else None,
            retention_period=Duration.hours(kinesis_settings.retention_hours),
            removal_policy=removal.policy,
        )

        # --- the transform Lambda
        transform_logs = EncryptedLogGroup(
            self,
            "TransformLogs",
            log_group_name=names.transform_log_group(ds),
            key=lake.key,
            retention_days=settings.log_retention_days,
            removal_policy=removal.policy,
        )
        transform_role = iam.Role(
            self,
            "TransformRole",
            role_name=names.transform_role(ds),
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Firehose transform Lambda of {ds}: writes its own logs only",
        )
        transform_role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[transform_logs.log_group_arn],
            )
        )
        self.transform = lambda_.Function(
            self,
            "Transform",
            function_name=names.transform_function(ds),
            description=f"Normalizes {ds} records and returns their dt/hour partition keys",
            runtime=TRANSFORM_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(transform_code_dir)),
            role=transform_role,
            environment={"DATASET": ds},
            environment_encryption=lake.key,
            timeout=Duration.minutes(1),
            memory_size=512,
            log_group=transform_logs,
            # Firehose's invocations are bounded (a burst on one stream cannot take the
            # account's concurrency) and never starved by other functions; a throttled
            # invocation is retried by Firehose, then its records go to the error prefix
            reserved_concurrent_executions=settings.firehose.transform_reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
        )
        checkov.skip(
            self.transform,
            "CKV_AWS_116",
            "Firehose invokes the transform synchronously "
            "and handles failures itself (retries, then the error prefix): a dead-letter "
            "queue only receives asynchronous invocations",
        )
        checkov.skip(
            self.transform,
            "CKV_AWS_117",
            "the transform only rewrites the records it is "
            "given and calls no service: nothing in the VPC to reach",
        )
        wait_for_role_policy(self.transform, transform_role)

        # --- Firehose
        delivery_logs = EncryptedLogGroup(
            self,
            "DeliveryLogs",
            log_group_name=names.delivery_log_group(ds),
            key=lake.key,
            retention_days=settings.log_retention_days,
            removal_policy=removal.policy,
        )
        logs.LogStream(
            self,
            "DeliveryLogStream",
            log_group=delivery_logs,
            log_stream_name=DELIVERY_LOG_STREAM,
            removal_policy=removal.policy,
        )

        delivery_role = iam.Role(
            self,
            "DeliveryRole",
            role_name=names.firehose_role(ds),
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
            description=f"Firehose of {ds}: reads its stream, writes raw/{ds}/ and its error prefix",
        )
        raw = lake.raw
        object_arns = [
            raw.arn_for_objects(f"{layout.raw_prefix(ds)}*"),
            raw.arn_for_objects(f"{layout.errors_prefix(ds)}*"),
        ]
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadSourceStream",
                actions=[
                    "kinesis:DescribeStream",
                    "kinesis:DescribeStreamSummary",
                    "kinesis:GetShardIterator",
                    "kinesis:GetRecords",
                    "kinesis:ListShards",
                ],
                resources=[self.stream.stream_arn],
            )
        )
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteRawPrefixes",
                actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                resources=object_arns,
            )
        )
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                sid="LocateRawBucket",
                actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[raw.bucket_arn],
            )
        )
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                sid="UseLakeKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[lake.key.key_arn],
            )
        )
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeTransform",
                actions=["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"],
                resources=[self.transform.function_arn],
            )
        )
        delivery_role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteDeliveryLogs",
                actions=["logs:PutLogEvents"],
                resources=[delivery_logs.log_group_arn],
            )
        )

        # L1: the L2 DeliveryStream cannot take partition keys from a transform Lambda's
        # metadata together with a Kinesis source and a processor's buffering parameters.
        self.delivery_stream = firehose.CfnDeliveryStream(
            self,
            "DeliveryStream",
            delivery_stream_name=names.delivery_stream(ds),
            delivery_stream_type="KinesisStreamAsSource",
            kinesis_stream_source_configuration=firehose.CfnDeliveryStream.KinesisStreamSourceConfigurationProperty(
                kinesis_stream_arn=self.stream.stream_arn, role_arn=delivery_role.role_arn
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=raw.bucket_arn,
                role_arn=delivery_role.role_arn,
                prefix=layout.firehose_prefix(ds),
                error_output_prefix=layout.firehose_error_prefix(ds),
                compression_format="GZIP",
                # Spark and Hadoop pick the codec from the extension: without it they would
                # read gzip bytes as text.
                file_extension=layout.RAW_STREAM_FILE_EXTENSION,
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    size_in_m_bs=settings.firehose.buffer_mib,
                    interval_in_seconds=settings.firehose.buffer_seconds,
                ),
                encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                    kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                        awskms_key_arn=lake.key.key_arn
                    )
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=delivery_logs.log_group_name,
                    log_stream_name=DELIVERY_LOG_STREAM,
                ),
                dynamic_partitioning_configuration=firehose.CfnDeliveryStream.DynamicPartitioningConfigurationProperty(
                    enabled=True,
                    retry_options=firehose.CfnDeliveryStream.RetryOptionsProperty(
                        duration_in_seconds=300
                    ),
                ),
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True,
                    processors=[
                        firehose.CfnDeliveryStream.ProcessorProperty(
                            type="Lambda",
                            parameters=[
                                _param("LambdaArn", self.transform.function_arn),
                                _param("NumberOfRetries", "3"),
                                _param("BufferSizeInMBs", str(TRANSFORM_BUFFER_MB)),
                                _param("BufferIntervalInSeconds", "60"),
                            ],
                        )
                    ],
                ),
                s3_backup_mode="Disabled",
            ),
        )
        # Firehose validates its role's permissions at creation: create the policy first.
        wait_for_role_policy(self.delivery_stream, delivery_role)

        NagSuppressions.add_resource_suppressions(
            delivery_role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": f"Firehose writes objects under raw/{ds}/ and raw/_errors/{ds}/ only; "
                    "object keys below these prefixes are generated per delivery, so the "
                    "resource must end with a wildcard",
                    "appliesTo": [
                        f"Resource::{arn_token(raw)}/{layout.raw_prefix(ds)}*",
                        f"Resource::{arn_token(raw)}/{layout.errors_prefix(ds)}*",
                    ],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": f"log streams of the {names.delivery_log_group(ds)} log group only: a log "
                    "group ARN ends in :* to cover its streams",
                    "appliesTo": [f"Resource::{arn_token(delivery_logs)}"],
                },
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            transform_role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": f"log streams of the {names.transform_log_group(ds)} log group only: a log "
                    "group ARN ends in :* to cover its streams",
                    "appliesTo": [f"Resource::{arn_token(transform_logs)}"],
                },
                xray_tracing_suppression(),
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.stream,
            [
                {
                    "id": "AwsSolutions-KDS3",
                    "reason": "the stream deliberately uses the lake's customer-managed key, not "
                    "aws/kinesis: its key policy limits decryption to the platform's roles",
                }
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.delivery_stream,
            [
                {
                    "id": "AwsSolutions-KDF1",
                    "reason": "Firehose rejects DeliveryStreamEncryptionConfigurationInput when the "
                    "source is a Kinesis stream; the source stream is encrypted with the lake "
                    "KMS key and the S3 destination uses SSE-KMS with the same key",
                }
            ],
        )


def _param(name: str, value: str) -> firehose.CfnDeliveryStream.ProcessorParameterProperty:
    return firehose.CfnDeliveryStream.ProcessorParameterProperty(
        parameter_name=name, parameter_value=value
    )
