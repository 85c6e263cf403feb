"""MonitoringStack: one encrypted alerts topic (with the environment's e-mail), alarms on
every moving part, and a CloudWatch dashboard of the pipeline.

Alarms find their resources by the physical names `naming` gives them, not by construct
references: the stack deploys first and independently, and the orchestration stack
publishes to its topic.

- Kinesis: consumer lag (iterator age) and write throttling, per stream;
- Firehose: data freshness, S3 delivery and transform failures, per delivery stream;
- Glue: failed, timed-out or errored runs of the platform's jobs (EventBridge);
- EMR: clusters of the platform terminated with errors, failed platform steps (EventBridge);
- Step Functions: failed, timed-out or aborted ML pipeline executions (CloudWatch).
"""

from __future__ import annotations

import re
from typing import Any

import jsii
from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk.interfaces.aws_events import IRuleRef
from constructs import Construct

from dataplatform import model_monitor
from dataplatform.naming import Names, pascal_case
from dataplatform.spec import Dataset, Environment, Model
from stacks.constructs.removal import DataRemoval

# Kinesis consumers (Firehose) falling this far behind lose data before retention ends.
ITERATOR_AGE_ALARM_MS = 15 * 60 * 1000


@jsii.implements(events.IRuleTarget)
class TopicTarget:
    """An EventBridge rule target on the alerts topic that adds no permissions:
    `targets.SnsTopic` grants events.amazonaws.com sns:Publish and the key's use without
    conditions, beside the statements above that limit it to this account's rules (and
    so undo that limit)."""

    def __init__(self, topic: sns.ITopic, message: events.RuleTargetInput):
        self.topic, self.message = topic, message

    def bind(self, rule: IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self.topic.topic_arn, input=self.message)


class MonitoringStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        datasets: tuple[Dataset, ...],
        removal: DataRemoval,
        models: tuple[Model, ...] = (),
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.names = names

        # The lake key admits only the platform's roles; alarms and EventBridge publish as
        # AWS services, so the topic gets its own key that admits exactly those services.
        self.key = kms.Key(
            self,
            "AlertsKey",
            alias=f"alias/{names.prefix}-alerts",
            enable_key_rotation=True,
            description=f"{names.prefix}: encrypts the alerts topic",
            removal_policy=removal.policy,
        )
        for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"Publish{pascal_case(service.split('.')[0])}",
                    principals=[iam.ServicePrincipal(service)],
                    actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
                )
            )
        self.topic = sns.Topic(
            self,
            "Alerts",
            topic_name=names.alerts_topic,
            display_name=f"{names.prefix} alerts",
            master_key=self.key,
            enforce_ssl=True,
        )
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeRulesOfThisAccount",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        alarm_action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cw.Alarm] = {}

        def alarm(
            cid: str,
            metric: cw.IMetric,
            *,
            threshold: float,
            description: str,
            comparison=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            periods: int = 1,
            missing=cw.TreatMissingData.NOT_BREACHING,
        ) -> cw.Alarm:
            created = cw.Alarm(
                self,
                cid,
                alarm_name=f"{names.prefix} {cid}",
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=comparison,
                treat_missing_data=missing,
                alarm_description=description,
            )
            created.add_alarm_action(alarm_action)
            self.alarms[cid] = created
            return created

        stream_widgets, delivery_widgets = [], []
        for ds in datasets:
            if not ds.is_stream:
                continue
            cid = pascal_case(ds.name)
            stream = {"StreamName": names.stream(ds.name)}
            iterator_age = cw.Metric(
                namespace="AWS/Kinesis",
                metric_name="GetRecords.IteratorAgeMilliseconds",
                dimensions_map=stream,
                statistic="Maximum",
                period=Duration.minutes(5),
            )
            throttled = cw.Metric(
                namespace="AWS/Kinesis",
                metric_name="WriteProvisionedThroughputExceeded",
                dimensions_map=stream,
                statistic="Sum",
                period=Duration.minutes(5),
            )
            alarm(
                f"{cid}IteratorAge",
                iterator_age,
                threshold=ITERATOR_AGE_ALARM_MS,
                description=f"Firehose lags behind {names.stream(ds.name)} by more than "
                f"{ITERATOR_AGE_ALARM_MS // 60000} minutes",
                periods=3,
            )
            alarm(
                f"{cid}WriteThrottling",
                throttled,
                threshold=0,
                description=f"producers of {names.stream(ds.name)} are throttled: raise the "
                "shard count or use on-demand capacity",
                periods=2,
            )

            delivery = {"DeliveryStreamName": names.delivery_stream(ds.name)}
            freshness = cw.Metric(
                namespace="AWS/Firehose",
                metric_name="DeliveryToS3.DataFreshness",
                dimensions_map=delivery,
                statistic="Maximum",
                period=Duration.minutes(5),
            )
            delivered = cw.Metric(
                namespace="AWS/Firehose",
                metric_name="DeliveryToS3.Success",
                dimensions_map=delivery,
                statistic="Average",
                period=Duration.minutes(5),
            )
            transformed = cw.Metric(
                namespace="AWS/Firehose",
                metric_name="ExecuteProcessing.Success",
                dimensions_map=delivery,
                statistic="Average",
                period=Duration.minutes(5),
            )
            # Data older than two buffer intervals (plus retries) is not being delivered.
            freshness_limit = 2 * settings.firehose.buffer_seconds + 300
            alarm(
                f"{cid}DeliveryFreshness",
                freshness,
                threshold=freshness_limit,
                description=f"{names.delivery_stream(ds.name)} holds data older than "
                f"{freshness_limit} s: S3 delivery is stuck",
                periods=2,
            )
            alarm(
                f"{cid}DeliveryFailures",
                delivered,
                threshold=1,
                comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                description=f"{names.delivery_stream(ds.name)} failed to write to S3 "
                "(see its error prefix and log group)",
            )
            alarm(
                f"{cid}TransformFailures",
                transformed,
                threshold=1,
                comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                description=f"the transform Lambda of {names.delivery_stream(ds.name)} failed",
            )
            stream_widgets.append(
                cw.GraphWidget(
                    title=f"{ds.name}: Kinesis iterator age (ms) and throttling",
                    left=[iterator_age],
                    right=[throttled],
                    width=12,
                )
            )
            delivery_widgets.append(
                cw.GraphWidget(
                    title=f"{ds.name}: Firehose freshness (s) and delivery success",
                    left=[freshness],
                    right=[delivered, transformed],
                    width=12,
                )
            )

        def failure_rule(
            cid: str,
            name: str,
            description: str,
            source: str,
            detail_type: str,
            detail: dict,
            message: str,
        ) -> events.Rule:
            """An EventBridge rule sending a readable message (`<$.detail.x>` fields) to
            the topic."""
            rule = events.Rule(
                self,
                cid,
                rule_name=f"{names.prefix}-{name}",
                description=description,
                event_pattern=events.EventPattern(
                    source=[source], detail_type=[detail_type], detail=detail
                ),
            )
            text = re.sub(
                r"<(\$\.[a-zA-Z.]+)>", lambda m: events.EventField.from_path(m.group(1)), message
            )
            rule.add_target(TopicTarget(self.topic, events.RuleTargetInput.from_text(text)))
            return rule

        # Glue: the platform's curate jobs, by name.
        glue_rule = failure_rule(
            "GlueJobFailures",
            "glue-job-failures",
            "failed, timed-out or errored runs of the platform's Glue jobs",
            "aws.glue",
            "Glue Job State Change",
            {
                "jobName": [names.curate_job(ds.name) for ds in datasets],
                "state": ["FAILED", "TIMEOUT", "ERROR"],
            },
            "Glue job <$.detail.jobName> run <$.detail.jobRunId> ended <$.detail.state>: "
            "<$.detail.message>",
        )
        # EMR: clusters named with the prefix, and the platform's steps (named with it too).
        emr_cluster_rule = failure_rule(
            "EmrClusterFailures",
            "emr-cluster-failures",
            "platform EMR clusters that terminated with errors",
            "aws.emr",
            "EMR Cluster State Change",
            {"name": [{"prefix": names.prefix}], "state": ["TERMINATED_WITH_ERRORS"]},
            "EMR cluster <$.detail.name> (<$.detail.clusterId>) terminated with errors: "
            "<$.detail.stateChangeReason>",
        )
        emr_step_rule = failure_rule(
            "EmrStepFailures",
            "emr-step-failures",
            "failed steps of the platform (step names start with the prefix)",
            "aws.emr",
            "EMR Step Status Change",
            {"name": [{"prefix": f"{names.prefix} "}], "state": ["FAILED"]},
            "EMR step <$.detail.name> (<$.detail.stepId>) on cluster <$.detail.clusterId> "
            "failed: <$.detail.message>",
        )
        self.rules = {"glue": glue_rule, "emr_cluster": emr_cluster_rule, "emr_step": emr_step_rule}

        # Step Functions: the ML pipeline, by its ARN from naming.
        state_machine_arn = (
            f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:"
            f"stateMachine:{names.ml_pipeline}"
        )
        pipeline_metrics = {
            name: cw.Metric(
                namespace="AWS/States",
                metric_name=name,
                dimensions_map={"StateMachineArn": state_machine_arn},
                statistic="Sum",
                period=Duration.minutes(5),
            )
            for name in (
                "ExecutionsStarted",
                "ExecutionsSucceeded",
                "ExecutionsFailed",
                "ExecutionsTimedOut",
                "ExecutionsAborted",
            )
        }
        pipeline_failures = cw.MathExpression(
            expression="failed + timedout + aborted",
            label="failed executions",
            using_metrics={
                "failed": pipeline_metrics["ExecutionsFailed"],
                "timedout": pipeline_metrics["ExecutionsTimedOut"],
                "aborted": pipeline_metrics["ExecutionsAborted"],
            },
            period=Duration.minutes(5),
        )
        alarm(
            "PipelineFailures",
            pipeline_failures,
            threshold=0,
            description=f"an execution of {names.ml_pipeline} failed, timed out or was "
            "aborted (the pipeline also notifies with the failing state)",
        )

        # Served models that declare `monitoring:`: the figures `dp monitor` publishes
        # (dataplatform/model_monitor.py) and three alarms each. Drift and performance tell
        # people; the breach alarm (any breach of the spec's thresholds) is the one whose
        # change to ALARM starts the ML pipeline (the orchestration stack's rule): an alarm
        # changes state once, so a breach reported day after day retrains once. Its period
        # is a day and missing data keeps the state, as the monitor runs about daily.
        model_widgets: list[cw.IWidget] = []
        self.model_alarms: dict[str, dict[str, cw.Alarm]] = {}
        for model in models:
            if model.monitoring is None:
                continue
            watched = model.monitoring

            def figure(name: str, statistic: str = "Maximum", *, of: str = model.name) -> cw.Metric:
                return cw.Metric(
                    namespace=names.monitoring_namespace,
                    metric_name=name,
                    dimensions_map={"Model": of},
                    statistic=statistic,
                    period=Duration.days(1),
                )

            def model_alarm(
                kind: str, metric: cw.Metric, *, of: str = model.name, **options
            ) -> cw.Alarm:
                created = cw.Alarm(
                    self,
                    f"{pascal_case(of)}{pascal_case(kind)}",
                    alarm_name=names.monitor_alarm(of, kind),
                    metric=metric,
                    evaluation_periods=1,
                    treat_missing_data=cw.TreatMissingData.IGNORE,
                    **options,
                )
                created.add_alarm_action(alarm_action)
                return created

            at_least_one: dict[str, Any] = {
                "threshold": 1,
                "comparison_operator": cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            }
            retrains = "; starts the ML pipeline (the new package waits for approval)"
            alarms = {
                "drift": model_alarm(
                    "drift",
                    figure(model_monitor.METRIC_DRIFTED_FEATURES),
                    alarm_description=f"{model.name}: served inputs drifted from the training "
                    f"data (PSI >= {watched.psi} and p < {watched.p_value}; `dp monitor "
                    f"{model.name}` names the features)",
                    **at_least_one,
                ),
                "breach": model_alarm(
                    "breach",
                    figure(model_monitor.METRIC_BREACH),
                    alarm_description=f"{model.name}: a breach of its monitoring thresholds"
                    + (retrains if watched.retrain_on_breach else ""),
                    **at_least_one,
                ),
            }
            if watched.auc is not None:
                alarms["performance"] = model_alarm(
                    "performance",
                    figure(model_monitor.METRIC_REALIZED_AUC, "Minimum"),
                    threshold=watched.auc,
                    comparison_operator=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                    alarm_description=f"{model.name}: realized AUC under {watched.auc} on "
                    f"{watched.min_outcomes}+ known outcomes",
                )
            self.model_alarms[model.name] = alarms
            model_widgets.append(
                cw.GraphWidget(
                    title=f"{model.name}: monitoring",
                    left=[
                        figure(model_monitor.METRIC_MAX_PSI),
                        figure(model_monitor.METRIC_SCORE_PSI),
                        figure(model_monitor.METRIC_DRIFTED_FEATURES),
                    ],
                    right=[figure(model_monitor.METRIC_REALIZED_AUC, "Minimum")],
                    width=12,
                )
            )
            self.alarms.update(
                {f"{pascal_case(model.name)}{pascal_case(k)}": a for k, a in alarms.items()}
            )

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=names.dashboard,
            widgets=[
                [
                    cw.TextWidget(
                        markdown=f"# {names.prefix}: ingestion, curation, features, training",
                        width=24,
                        height=1,
                    )
                ],
                stream_widgets + delivery_widgets,
                *([model_widgets] if model_widgets else []),
                [
                    cw.GraphWidget(
                        title="ML pipeline executions",
                        left=list(pipeline_metrics.values()),
                        width=12,
                    ),
                    cw.AlarmStatusWidget(
                        title="Alarms", alarms=list(self.alarms.values()), width=12
                    ),
                ],
            ],
        )
