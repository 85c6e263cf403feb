"""NetworkStack: the VPC that EMR (and SageMaker) run in.

Two (or three) AZs, each with a public subnet (NAT gateways only) and a private subnet
with egress (EMR nodes, training jobs). S3 traffic takes a gateway endpoint, so lake
data never crosses the NAT or the internet. Flow logs go to a log group encrypted with
the lake key and kept as long as the environment keeps logs.
"""

from __future__ import annotations

from aws_cdk import Stack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform.naming import Names
from dataplatform.spec import Environment
from stacks.constructs.emr_cluster import EMR_MANAGED_TAG
from stacks.constructs.lake import Lake
from stacks.constructs.log_group import EncryptedLogGroup
from stacks.constructs.removal import DataRemoval

PRIVATE_SUBNET_MASK = 22  # 1,019 addresses per AZ: room for large spot fleets
PUBLIC_SUBNET_MASK = 24  # NAT gateways only
FLOW_LOG_TRAFFIC = {
    "ALL": ec2.FlowLogTrafficType.ALL,
    "ACCEPT": ec2.FlowLogTrafficType.ACCEPT,
    "REJECT": ec2.FlowLogTrafficType.REJECT,
}


class NetworkStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        lake: Lake,
        removal: DataRemoval,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        net = settings.network
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            vpc_name=names.vpc,
            ip_addresses=ec2.IpAddresses.cidr(net.cidr),
            max_azs=net.max_azs,
            nat_gateways=net.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=PUBLIC_SUBNET_MASK,
                    map_public_ip_on_launch=False,
                ),
                ec2.SubnetConfiguration(
                    name="private",
                    subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                    cidr_mask=PRIVATE_SUBNET_MASK,
                ),
            ],
            # The default security group allows all traffic between its members: empty it.
            restrict_default_security_group=True,
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )
        self.private_subnets = self.vpc.select_subnets(
            subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
        )
        for subnet in self.private_subnets.subnets:
            Tags.of(subnet).add(*EMR_MANAGED_TAG)

        flow_log_group = EncryptedLogGroup(
            self,
            "FlowLogGroup",
            log_group_name=names.flow_log_group,
            key=lake.key,
            retention_days=settings.log_retention_days,
            removal_policy=removal.policy,
        )
        flow_log_role = iam.Role(
            self,
            "FlowLogRole",
            role_name=names.flow_logs_role,
            assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com"),
            description=f"VPC flow logs of {names.vpc} into {names.flow_log_group}",
        )
        self.flow_log = ec2.FlowLog(
            self,
            "FlowLog",
            resource_type=ec2.FlowLogResourceType.from_vpc(self.vpc),
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group, flow_log_role),
            traffic_type=FLOW_LOG_TRAFFIC[net.flow_logs_traffic],
        )
        self.flow_log_group = flow_log_group

        NagSuppressions.add_resource_suppressions_by_path(
            self,
            f"/{self.node.path}/Custom::VpcRestrictDefaultSGCustomResourceProvider/Role",
            [
                {
                    "id": "AwsSolutions-IAM4",
                    "reason": "CDK's provider for restrict_default_security_group (it empties the "
                    "default security group) logs with AWSLambdaBasicExecutionRole; its "
                    "inline policy allows only ec2:Authorize/RevokeSecurityGroup* on "
                    "this VPC's default security group",
                    "appliesTo": [
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                        "AWSLambdaBasicExecutionRole"
                    ],
                }
            ],
        )
