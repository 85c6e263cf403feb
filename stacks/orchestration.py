"""OrchestrationStack: the ML pipeline as one Step Functions state machine and the quality
gate Lambda it calls (stacks/constructs/ml_pipeline.py), and (where the environment asks)
its nightly schedule, and for each monitored model with `retrain_on_breach` the rule that
starts the pipeline when the model's breach alarm (stacks/monitoring.py) goes to ALARM."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from dataplatform.naming import Names, pascal_case
from dataplatform.spec import Environment, Platform
from stacks.constructs.lake import Lake
from stacks.constructs.ml_pipeline import MlPipeline
from stacks.constructs.removal import DataRemoval
from stacks.emr import EmrStack
from stacks.ml import MlStack


class OrchestrationStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        platform: Platform,
        lake: Lake,
        emr: EmrStack,
        ml: MlStack,
        alerts: sns.ITopic,
        alerts_key: kms.IKey,
        removal: DataRemoval,
        gate_code_dir: Path,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        pipeline = MlPipeline(
            self,
            names=names,
            settings=settings,
            platform=platform,
            lake=lake,
            cluster=emr.definition,
            training=ml.training,
            training_role=ml.role,
            alerts=alerts,
            alerts_key=alerts_key,
            removal=removal,
            gate_code_dir=gate_code_dir,
        )
        self.quality_gate = pipeline.quality_gate
        self.state_machine = pipeline.state_machine

        self.schedule = None
        if settings.pipeline.schedule:
            self.schedule = events.Rule(
                self,
                "Schedule",
                rule_name=f"{names.ml_pipeline}-schedule",
                description=f"runs {names.ml_pipeline} on the environment's schedule",
                schedule=events.Schedule.expression(settings.pipeline.schedule),
            )
            self.schedule.add_target(targets.SfnStateMachine(self.state_machine))

        # A breach retrains: the breach alarm's change to ALARM (EventBridge's "CloudWatch
        # Alarm State Change" on the default bus) starts the pipeline, with the alarm and its
        # reason as the execution's input (the pipeline takes its defaults for the rest).
        self.retrain_rules: dict[str, events.Rule] = {}
        for model in platform.models:
            if model.monitoring is None or not model.monitoring.retrain_on_breach:
                continue
            alarm_arn = (
                f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:"
                f"{names.monitor_alarm(model.name, 'breach')}"
            )
            rule = events.Rule(
                self,
                f"RetrainOnBreach{pascal_case(model.name)}",
                rule_name=names.retrain_rule(model.name),
                description=f"{model.name}'s monitoring breached: runs {names.ml_pipeline}",
                event_pattern=events.EventPattern(
                    source=["aws.cloudwatch"],
                    detail_type=["CloudWatch Alarm State Change"],
                    resources=[alarm_arn],
                    detail={"state": {"value": ["ALARM"]}},
                ),
            )
            rule.add_target(
                targets.SfnStateMachine(
                    self.state_machine,
                    input=events.RuleTargetInput.from_object(
                        {
                            "trigger": "monitoring breach",
                            "model": model.name,
                            "alarm": events.EventField.from_path("$.detail.alarmName"),
                            "reason": events.EventField.from_path("$.detail.state.reason"),
                        }
                    ),
                )
            )
            self.retrain_rules[model.name] = rule
