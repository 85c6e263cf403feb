"""OrchestrationStack: the ML pipeline as one Step Functions state machine and the quality
gate Lambda it calls (stacks/constructs/ml_pipeline.py), and (where the environment asks)
its nightly schedule."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from dataplatform.naming import Names
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
