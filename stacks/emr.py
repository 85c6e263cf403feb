"""EmrStack: the EMR security and compute profiles of the environment and, when the
environment asks for one (`emr.long_running`), a long-running cluster for `dp emr run`.
The ML pipeline creates transient clusters from the same definition (`self.definition`)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from dataplatform.naming import Names
from dataplatform.spec import Environment
from stacks.constructs.emr_cluster import EmrClusterDefinition, EmrCompute, EmrSecurity
from stacks.constructs.lake import Lake
from stacks.network import NetworkStack


class EmrStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        lake: Lake,
        network: NetworkStack,
        feature_tables: tuple[str, ...],
        curated_tables: tuple[str, ...],
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.security = EmrSecurity(
            self,
            "Security",
            names=names,
            lake=lake,
            vpc=network.vpc,
            subnets=list(network.private_subnets.subnets),
            in_transit_encryption=settings.emr.in_transit_encryption,
            feature_tables=feature_tables,
            curated_tables=curated_tables,
        )
        self.compute = EmrCompute.from_settings(settings.emr)
        self.definition = EmrClusterDefinition(self.security, self.compute)

        self.cluster = None
        if settings.emr.long_running:
            self.cluster = self.definition.long_running_cluster(
                self, "Cluster", name=names.emr_cluster
            )
            CfnOutput(
                self,
                "ClusterId",
                value=self.cluster.ref,
                description="the long-running cluster `dp emr run` adds steps to",
            )
