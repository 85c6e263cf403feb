"""ServingStack: real-time scoring, for every model whose spec declares `serving:`.

Shared by the served models (kept when there is none, as the scorers' and the CRM's
interfaces do not depend on which models are served):
- the online features and scores tables (DynamoDB, on demand, the lake key, PITR, TTL on
  `expires_at`), kept or destroyed as the environment's data is;
- the platform's event bus, and its interventions rule: the served models' events (each
  model's detail-type: churn's HighChurnRisk, clv's HighValueCustomer) to the interventions
  queue (for the CRM; KMS, TLS only, a dead-letter queue) and to the alerts topic;
- the serving key (the queues: EventBridge writes to them, and the lake key admits no AWS
  service but CloudWatch Logs), the scorers' and the endpoints' security groups;
- a dashboard, and alarms to the alerts topic.

Per served model (stacks/constructs/stream_scorer.py, endpoint_deployer.py): its stream
scorer (an enhanced fan-out consumer of its stream, the scorer Lambda in the VPC, the event
source mapping and its on-failure queue), its endpoint rolled on approval (the rule on the
default bus, the deployer Lambda, its dead-letter queue), and their alarms: iterator age,
scorer errors and throttles, endpoint 5XX errors and p99 model latency, the failure queues.

Why the tables use the lake key rather than a key of this stack: they hold the lake's data
(customers' events and the scores that also flow to the lake's scores streams), read
and written by the platform's roles only, which is exactly whom the lake key's policy admits
(a CDK key's policy delegates to every IAM policy of the account).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jsii
from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk.interfaces.aws_events import IRuleRef
from constructs import Construct

from dataplatform.naming import Names, pascal_case
from dataplatform.spec import SERVING_ACTIONS, Environment, Model
from stacks.constructs.endpoint_deployer import EndpointDeployer
from stacks.constructs.lake import Lake
from stacks.constructs.queue import encrypted_queue
from stacks.constructs.removal import DataRemoval
from stacks.constructs.stream_scorer import EVENT_SOURCE, StreamScorer
from stacks.network import NetworkStack

TTL_ATTRIBUTE = "expires_at"
PARTITION_KEY = "customer_id"
SORT_KEY = "sk"
VARIANT = "AllTraffic"  # the deployer's one production variant
# A scorer this far behind its stream no longer scores in real time.
ITERATOR_AGE_ALARM_MS = 5 * 60 * 1000
# SageMaker reports ModelLatency in microseconds.
MODEL_LATENCY_P99_ALARM_US = 500_000
INTERVENTIONS_MAX_RECEIVES = 5
EVENT_RETRIES = 8
EVENT_MAX_AGE = Duration.hours(24)


@jsii.implements(events.IRuleTarget)
class ResourcePolicyTarget:
    """A rule target reached through its own resource policy (a queue or a topic), with a
    dead-letter queue and a retry policy, and without the grants of `targets.SqsQueue` /
    `targets.SnsTopic`, which add unconditioned `events.amazonaws.com` statements to the
    key (the queue's policy below names the rule instead)."""

    def __init__(
        self,
        arn: str,
        *,
        dead_letter_queue: sqs.IQueue,
        message: events.RuleTargetInput | None = None,
    ) -> None:
        self.arn, self.message, self.dead_letter_queue = arn, message, dead_letter_queue

    def bind(self, rule: IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(
            arn=self.arn,
            input=self.message,
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(
                arn=self.dead_letter_queue.queue_arn
            ),
            retry_policy=events.CfnRule.RetryPolicyProperty(
                maximum_retry_attempts=EVENT_RETRIES,
                maximum_event_age_in_seconds=int(EVENT_MAX_AGE.to_seconds()),
            ),
        )


def intervention_events(models: tuple[Model, ...]) -> list[str]:
    """The detail-types the interventions rule routes: every action's (the CRM's interface
    does not depend on which models are served) and each served model's own."""
    served = {m.serving.event for m in models if m.serving is not None}
    return sorted(set(SERVING_ACTIONS.values()) | served)


class ServingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        lake: Lake,
        network: NetworkStack,
        streams: Mapping[str, kinesis.IStream],
        alerts: sns.ITopic,
        sagemaker_role: iam.IRole,
        models: tuple[Model, ...],
        removal: DataRemoval,
        scorer_code_dir: Path,
        deployer_code_dir: Path,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal.annotate(self)
        self.names = names
        self.served = tuple(m for m in models if m.serving is not None)

        # --- the serving key: the queues, which EventBridge writes to
        self.key = kms.Key(
            self,
            "ServingKey",
            alias=names.serving_key_alias,
            enable_key_rotation=True,
            description=f"{names.prefix}: encrypts the serving queues (interventions, "
            "scorer and deployer failures)",
            removal_policy=removal.policy,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeRulesOfThisAccount",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )

        # --- online features and scores
        def table(cid: str, name: str) -> dynamodb.Table:
            return dynamodb.Table(
                self,
                cid,
                table_name=name,
                partition_key=dynamodb.Attribute(
                    name=PARTITION_KEY, type=dynamodb.AttributeType.STRING
                ),
                sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
                encryption_key=lake.key,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                time_to_live_attribute=TTL_ATTRIBUTE,
                removal_policy=removal.policy,
                deletion_protection=not removal.destroys,
            )

        self.features_table = table("OnlineFeatures", names.online_features_table)
        self.scores_table = table("Scores", names.scores_table)

        # --- the event bus: the scorers' events -> the interventions queue and the alerts topic
        self.bus = events.EventBus(
            self,
            "Bus",
            event_bus_name=names.event_bus,
            description=f"{names.prefix}: the platform's events (the scorers' interventions)",
        )
        self.interventions_dlq = encrypted_queue(
            self,
            "InterventionsDeadLetters",
            queue_name=names.interventions_dlq,
            key=self.key,
            removal=removal,
        )
        self.interventions = encrypted_queue(
            self,
            "Interventions",
            queue_name=names.interventions_queue,
            key=self.key,
            visibility_timeout=Duration.minutes(5),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.interventions_dlq, max_receive_count=INTERVENTIONS_MAX_RECEIVES
            ),
            removal=removal,
        )
        self.intervention_events = intervention_events(models)
        self.interventions_rule = events.Rule(
            self,
            "InterventionsRule",
            rule_name=names.interventions_rule,
            description="a customer scored at or above a served model's threshold (its event: "
            f"{', '.join(self.intervention_events)}): the CRM acts on it (interventions "
            "queue) and on-call hears of it",
            event_bus=self.bus,
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE], detail_type=self.intervention_events
            ),
        )
        self.interventions_rule.add_target(
            ResourcePolicyTarget(
                self.interventions.queue_arn, dead_letter_queue=self.interventions_dlq
            )
        )
        self.interventions_rule.add_target(
            ResourcePolicyTarget(
                alerts.topic_arn,
                dead_letter_queue=self.interventions_dlq,
                message=events.RuleTargetInput.from_text(
                    f"{events.EventField.detail_type} on {names.event_bus}: "
                    f"{events.EventField.from_path('$.detail')}"
                ),
            )
        )
        # the alerts topic admits this account's rules already (monitoring stack)
        for queue in (self.interventions, self.interventions_dlq):
            queue.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="TheInterventionsRule",
                    principals=[iam.ServicePrincipal("events.amazonaws.com")],
                    actions=["sqs:SendMessage"],
                    resources=[queue.queue_arn],
                    conditions={"ArnEquals": {"aws:SourceArn": self.interventions_rule.rule_arn}},
                )
            )

        # --- network: HTTPS out only (AWS APIs through the NAT, S3 through its endpoint)
        def security_group(cid: str, name: str, description: str) -> ec2.SecurityGroup:
            group = ec2.SecurityGroup(
                self,
                cid,
                vpc=network.vpc,
                security_group_name=name,
                description=description,
                allow_all_outbound=False,
            )
            group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs only")
            return group

        self.scorer_security_group = security_group(
            "ScorerSecurityGroup",
            names.scorer_security_group,
            f"{names.prefix} stream scorers (no inbound; HTTPS out to AWS APIs)",
        )
        self.endpoint_security_group = security_group(
            "EndpointSecurityGroup",
            names.endpoint_security_group,
            f"{names.prefix} SageMaker instance endpoints (no inbound; HTTPS out)",
        )
        subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        subnet_ids = [s.subnet_id for s in network.private_subnets.subnets]

        # --- per served model
        self.scorers: dict[str, StreamScorer] = {}
        self.deployers: dict[str, EndpointDeployer] = {}
        for model in self.served:
            serving = model.serving
            assert serving is not None
            cid = pascal_case(model.name)
            stream = streams[serving.stream]
            if stream.encryption_key is None:
                raise ValueError(f"stream {serving.stream} has no KMS key")
            self.scorers[model.name] = StreamScorer(
                self,
                f"{cid}Scorer",
                model=model,
                names=names,
                settings=settings,
                vpc=network.vpc,
                subnets=subnets,
                security_group=self.scorer_security_group,
                stream=stream,
                scores_stream=streams[serving.scores_dataset] if serving.scores_dataset else None,
                lake_key=lake.key,
                queue_key=self.key,
                features_table=self.features_table,
                scores_table=self.scores_table,
                bus=self.bus,
                removal=removal,
                code_dir=scorer_code_dir,
            )
            self.deployers[model.name] = EndpointDeployer(
                self,
                f"{cid}Endpoint",
                model=model,
                names=names,
                settings=settings,
                lake_key=lake.key,
                models_bucket=lake.models,
                queue_key=self.key,
                sagemaker_role=sagemaker_role,
                subnet_ids=subnet_ids,
                security_group=self.endpoint_security_group,
                removal=removal,
                code_dir=deployer_code_dir,
            )

        self._alarms_and_dashboard(alerts)

    # ----------------------------------------------------------------------- monitoring

    def _alarms_and_dashboard(self, alerts: sns.ITopic) -> None:
        names = self.names
        action = cw_actions.SnsAction(alerts)
        self.alarms: dict[str, cw.Alarm] = {}

        def alarm(
            cid: str, metric: cw.IMetric, *, threshold: float, description: str, periods: int = 1
        ) -> cw.Alarm:
            created = cw.Alarm(
                self,
                cid,
                alarm_name=f"{names.prefix} {cid}",
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                # before the first approval there is no endpoint, and idle hours have no data
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            created.add_alarm_action(action)
            self.alarms[cid] = created
            return created

        def depth(queue: sqs.IQueue) -> cw.Metric:
            return queue.metric_approximate_number_of_messages_visible(
                statistic="Maximum", period=Duration.minutes(5)
            )

        rows: list[list[cw.IWidget]] = []
        for model in self.served:
            m, cid = model.name, pascal_case(model.name)
            assert model.serving is not None
            stream = names.stream(model.serving.stream)
            scorer, deployer = self.scorers[m], self.deployers[m]
            fn = scorer.function
            five = Duration.minutes(5)
            iterator_age = fn.metric("IteratorAge", statistic="Maximum", period=Duration.minutes(1))
            behind = cw.Metric(
                namespace="AWS/Kinesis",
                metric_name="SubscribeToShardEvent.MillisBehindLatest",
                dimensions_map={"StreamName": stream, "ConsumerName": names.stream_consumer(m)},
                statistic="Maximum",
                period=Duration.minutes(1),
            )
            errors = fn.metric_errors(statistic="Sum", period=five)
            throttles = fn.metric_throttles(statistic="Sum", period=five)
            invocations = fn.metric_invocations(statistic="Sum", period=five)
            endpoint = {"EndpointName": names.endpoint(m), "VariantName": VARIANT}
            endpoint_5xx = cw.Metric(
                namespace="AWS/SageMaker",
                metric_name="Invocation5XXErrors",
                dimensions_map=endpoint,
                statistic="Sum",
                period=five,
            )
            endpoint_invocations = cw.Metric(
                namespace="AWS/SageMaker",
                metric_name="Invocations",
                dimensions_map=endpoint,
                statistic="Sum",
                period=five,
            )
            latency = cw.Metric(
                namespace="AWS/SageMaker",
                metric_name="ModelLatency",
                dimensions_map=endpoint,
                statistic="p99",
                period=five,
            )
            alarm(
                f"{cid}ScorerIteratorAge",
                iterator_age,
                threshold=ITERATOR_AGE_ALARM_MS,
                description=f"{names.scorer_function(m)} lags behind "
                f"{stream} by more than "
                f"{ITERATOR_AGE_ALARM_MS // 60000} minutes: scores are not real-time",
                periods=5,
            )
            alarm(
                f"{cid}ScorerErrors",
                errors,
                threshold=0,
                description=f"{names.scorer_function(m)} failed (its batches are retried, "
                f"bisected, then sent to {names.scorer_failures_queue(m)})",
            )
            alarm(
                f"{cid}ScorerThrottles",
                throttles,
                threshold=0,
                description=f"{names.scorer_function(m)} is throttled at its reserved "
                "concurrency: the stream's shards outnumber what the endpoint may take",
                periods=2,
            )
            alarm(
                f"{cid}Endpoint5XXErrors",
                endpoint_5xx,
                threshold=0,
                description=f"{names.endpoint(m)} answered with 5XX errors (see "
                f"{names.endpoint_log_group(m)})",
            )
            alarm(
                f"{cid}EndpointModelLatencyP99",
                latency,
                threshold=MODEL_LATENCY_P99_ALARM_US,
                description=f"{names.endpoint(m)}'s p99 model latency is above "
                f"{MODEL_LATENCY_P99_ALARM_US // 1000} ms",
                periods=3,
            )
            alarm(
                f"{cid}ScorerFailedBatches",
                depth(scorer.failures),
                threshold=0,
                description=f"{names.scorer_failures_queue(m)} holds batches the scorer gave "
                f"up on: replay them from {stream}",
            )
            alarm(
                f"{cid}DeployerFailures",
                depth(deployer.dlq),
                threshold=0,
                description=f"an approval of {names.model_package_group(m)} was not rolled out "
                f"to {names.endpoint(m)}: see {names.deployer_dlq(m)} and "
                f"{names.deployer_log_group(m)}",
            )
            rows.append(
                [
                    cw.GraphWidget(
                        title=f"{m}: scorer lag (ms)", left=[iterator_age, behind], width=8
                    ),
                    cw.GraphWidget(
                        title=f"{m}: scorer invocations, errors, throttles",
                        left=[invocations],
                        right=[errors, throttles],
                        width=8,
                    ),
                    cw.GraphWidget(
                        title=f"{m}: endpoint invocations, 5XX, p99 model latency (us)",
                        left=[endpoint_invocations, endpoint_5xx],
                        right=[latency],
                        width=8,
                    ),
                ]
            )
        interventions_dlq = depth(self.interventions_dlq)
        alarm(
            "InterventionsUndelivered",
            interventions_dlq,
            threshold=0,
            description=f"{names.interventions_dlq} holds the served models' events "
            f"({', '.join(self.intervention_events)}) the CRM did not take or EventBridge "
            "could not deliver",
        )
        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=names.serving_dashboard,
            widgets=[
                [
                    cw.TextWidget(
                        markdown=f"# {names.prefix}: real-time scoring", width=24, height=1
                    )
                ],
                *rows,
                [
                    cw.GraphWidget(
                        title="interventions: queued and dead letters",
                        left=[depth(self.interventions), interventions_dlq],
                        width=12,
                    ),
                    cw.AlarmStatusWidget(
                        title="Serving alarms", alarms=list(self.alarms.values()), width=12
                    ),
                ],
            ],
        )
