"""One served model's stream scorer: its own enhanced fan-out consumer of the stream it
scores, the Lambda that keeps the online features and scores every change with the model's
endpoint, and the event source mapping between them (partial batch failures, bisect,
bounded retries and record age, an encrypted on-failure queue). Two models served from one
stream (churn, clv) are two of these, each reading the whole stream on its own.

Its role can do exactly what the scorer does, on exactly what it does it to: read the
stream through its consumer, read and write the two tables, invoke the one endpoint, put
the model's own events (its spec's detail-type: HighChurnRisk for churn, HighValueCustomer
for clv) on the platform's bus, put scores on its scores stream, send the batches it gives
up on to its queue, and run in the VPC."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform.naming import Names
from dataplatform.online import scorer
from dataplatform.serving import scorer_environment
from dataplatform.spec import Environment, Model, Serving
from stacks.constructs import checkov
from stacks.constructs.iam_dependency import wait_for_role_policy
from stacks.constructs.log_group import EncryptedLogGroup
from stacks.constructs.queue import encrypted_queue
from stacks.constructs.removal import DataRemoval
from stacks.constructs.vpc_lambda import (
    vpc_network_interface_statements,
    vpc_network_interface_suppressions,
)

SCORER_RUNTIME = lambda_.Runtime.PYTHON_3_14  # as the platform's other functions
# The source of what the scorers put on the platform's bus (each role may put its model's
# detail-type with it, nothing else).
EVENT_SOURCE = scorer.EVENT_SOURCE
# The event source mapping: batches of what arrived within a second (scores are wanted
# within seconds), the same size and retries as the local consumer's (one source:
# dataplatform/online/scorer.py), with bisection to isolate a bad record, then the
# on-failure queue.
BATCH_SIZE = scorer.BATCH_SIZE
BATCH_WINDOW_SECONDS = 1
RETRY_ATTEMPTS = scorer.MAX_RETRIES
MAX_RECORD_AGE_LIMIT_HOURS = 168  # Lambda's limit (604,800 s)
TIMEOUT = Duration.minutes(2)
# Each invocation scores its records one at a time, so an instance endpoint takes this
# many concurrent scorers per instance (a serverless one takes its max_concurrency).
SCORERS_PER_INSTANCE = 5


def reserved_concurrency(serving: Serving) -> int:
    """The scorer's reserved concurrency: what its endpoint can answer at once, so that a
    burst on the stream throttles the scorer (and shows as iterator age), not the
    endpoint, and cannot take the account's concurrency."""
    if serving.mode == "serverless":
        return serving.max_concurrency
    return SCORERS_PER_INSTANCE * serving.instances


def max_record_age(settings: Environment) -> Duration:
    """Records are given up (to the on-failure queue) when the stream is about to trim them,
    not before: the mapping starts at TRIM_HORIZON so that the online features are built
    from every retained event, and a shorter age would send the retained history of a first
    deployment to the failure queue. Lag shows long before, in the iterator age alarm."""
    return Duration.hours(min(settings.kinesis.retention_hours, MAX_RECORD_AGE_LIMIT_HOURS))


def endpoint_arn(names: Names, model: str) -> str:
    return (
        f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
        f"endpoint/{names.endpoint(model)}"
    )


class StreamScorer(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        model: Model,
        names: Names,
        settings: Environment,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        stream: kinesis.IStream,
        scores_stream: kinesis.IStream | None,
        lake_key: kms.IKey,
        queue_key: kms.IKey,
        features_table: dynamodb.ITable,
        scores_table: dynamodb.ITable,
        bus: events.IEventBus,
        removal: DataRemoval,
        code_dir: Path,
    ) -> None:
        super().__init__(scope, construct_id)
        serving = model.serving
        if serving is None:
            raise ValueError(f"model {model.name} declares no serving section")
        m = model.name

        self.consumer = kinesis.CfnStreamConsumer(
            self, "Consumer", consumer_name=names.stream_consumer(m), stream_arn=stream.stream_arn
        )
        self.failures = encrypted_queue(
            self,
            "Failures",
            queue_name=names.scorer_failures_queue(m),
            key=queue_key,
            removal=removal,
        )
        self.logs = EncryptedLogGroup(
            self,
            "Logs",
            log_group_name=names.scorer_log_group(m),
            key=lake_key,
            retention_days=settings.log_retention_days,
            removal_policy=removal.policy,
        )

        self.role = iam.Role(
            self,
            "Role",
            role_name=names.scorer_role(m),
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Stream scorer of {m}: reads {serving.stream} through its consumer, "
            "keeps the online features, invokes its endpoint, writes scores and events",
        )
        tables = [features_table.table_arn, scores_table.table_arn]
        region = Aws.REGION
        statements = [
            iam.PolicyStatement(
                sid="ReadTheStreamThroughItsConsumer",
                actions=["kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"],
                resources=[self.consumer.attr_consumer_arn],
            ),
            iam.PolicyStatement(
                sid="DescribeTheStream",
                actions=[
                    "kinesis:DescribeStream",
                    "kinesis:DescribeStreamSummary",
                    "kinesis:GetRecords",
                    "kinesis:GetShardIterator",
                    "kinesis:ListShards",
                ],
                resources=[stream.stream_arn],
            ),
            iam.PolicyStatement(
                sid="OnlineFeaturesAndScores",
                actions=[f"dynamodb:{call}" for call in scorer.DYNAMODB_CALLS],
                resources=tables,
            ),
            iam.PolicyStatement(
                sid="InvokeAndDescribeTheEndpoint",
                actions=[f"sagemaker:{call}" for call in scorer.SAGEMAKER_CALLS],
                resources=[endpoint_arn(names, m)],
            ),
            iam.PolicyStatement(
                sid=f"Put{serving.event}Events",
                actions=["events:PutEvents"],
                resources=[bus.event_bus_arn],
                conditions={
                    "StringEquals": {
                        "events:source": EVENT_SOURCE,
                        "events:detail-type": serving.event,
                    }
                },
            ),
            iam.PolicyStatement(
                sid="SendGivenUpBatches",
                actions=["sqs:SendMessage"],
                resources=[self.failures.queue_arn],
            ),
            iam.PolicyStatement(
                sid="UseTheLakeKey",
                # the stream's records, the tables and the scores stream are encrypted with it
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[lake_key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": [
                            f"kinesis.{region}.amazonaws.com",
                            f"dynamodb.{region}.amazonaws.com",
                        ]
                    }
                },
            ),
            iam.PolicyStatement(
                sid="UseTheQueueKey",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[queue_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"sqs.{region}.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="WriteLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.logs.log_group_arn],
            ),
            *vpc_network_interface_statements(vpc),
        ]
        if scores_stream is not None:
            statements.append(
                iam.PolicyStatement(
                    sid="PutScores",
                    actions=["kinesis:PutRecord", "kinesis:PutRecords"],
                    resources=[scores_stream.stream_arn],
                )
            )
        for statement in statements:
            self.role.add_to_policy(statement)

        self.function = lambda_.Function(
            self,
            "Function",
            function_name=names.scorer_function(m),
            description=f"Keeps the online features from {serving.stream} and scores {m} "
            f"with {names.endpoint(m)}",
            runtime=SCORER_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(code_dir)),
            role=self.role,
            environment=scorer_environment(
                model,
                names,
                features_table=features_table.table_name,
                scores_table=scores_table.table_name,
                event_bus=bus.event_bus_name,
                scores_stream=scores_stream.stream_name if scores_stream else None,
            ),
            environment_encryption=lake_key,
            timeout=TIMEOUT,
            memory_size=512,
            log_group=self.logs,
            reserved_concurrent_executions=reserved_concurrency(serving),
            tracing=lambda_.Tracing.ACTIVE,
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[security_group],
        )
        # Lambda creates the function's network interfaces with its role at creation.
        wait_for_role_policy(self.function, self.role)
        checkov.skip(
            self.function,
            "CKV_AWS_116",
            "the event source mapping invokes the scorer synchronously; the batches it "
            "gives up on go to the mapping's on-failure queue (encrypted SQS), and a "
            "function dead-letter queue only receives asynchronous invocations",
        )

        self.mapping = lambda_.CfnEventSourceMapping(
            self,
            "Mapping",
            function_name=self.function.function_name,
            event_source_arn=self.consumer.attr_consumer_arn,
            starting_position="TRIM_HORIZON",
            batch_size=BATCH_SIZE,
            maximum_batching_window_in_seconds=BATCH_WINDOW_SECONDS,
            function_response_types=["ReportBatchItemFailures"],
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=RETRY_ATTEMPTS,
            maximum_record_age_in_seconds=int(max_record_age(settings).to_seconds()),
            parallelization_factor=1,
            destination_config=lambda_.CfnEventSourceMapping.DestinationConfigProperty(
                on_failure=lambda_.CfnEventSourceMapping.OnFailureProperty(
                    destination=self.failures.queue_arn
                )
            ),
        )
        # Lambda checks the role can read the consumer when the mapping is created.
        wait_for_role_policy(self.mapping, self.role)

        NagSuppressions.add_resource_suppressions(
            self.role, vpc_network_interface_suppressions(), apply_to_children=True
        )
        NagSuppressions.add_resource_suppressions(
            self.failures,
            [
                {
                    "id": "AwsSolutions-SQS3",
                    "reason": f"{names.scorer_failures_queue(m)} is itself the on-failure "
                    "destination of the scorer's event source mapping (each message points to "
                    "a batch of the stream to replay); a queue behind it would hold nothing",
                }
            ],
        )
