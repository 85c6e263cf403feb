"""What a Lambda function in the platform VPC needs of its role: the network interfaces
Lambda creates for it with that role (AWSLambdaVPCAccessExecutionRole's actions), limited
to the platform VPC where AWS's condition keys allow it."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam

ENI_RESOURCE_TYPES = ("network-interface", "subnet", "security-group")


def _region_account() -> str:
    return f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}"


def vpc_network_interface_statements(vpc: ec2.IVpc) -> list[iam.PolicyStatement]:
    region_account = _region_account()
    vpc_arn = f"{region_account}:vpc/{vpc.vpc_id}"
    in_the_vpc = {"ArnEquals": {"ec2:Vpc": vpc_arn}}
    return [
        iam.PolicyStatement(
            sid="DescribeNetworkInterfaces",
            # no resource types: AWS allows these on * only
            actions=["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
            resources=["*"],
        ),
        iam.PolicyStatement(
            # The new interface has no ec2:Vpc key (AWS's condition-key tables); the subnet
            # and security groups it is created in must be the platform VPC's.
            sid="CreateNetworkInterfacesInThePlatformVpc",
            actions=["ec2:CreateNetworkInterface"],
            resources=[f"{region_account}:network-interface/*"],
        ),
        iam.PolicyStatement(
            sid="InSubnetsAndSecurityGroupsOfThePlatformVpc",
            actions=["ec2:CreateNetworkInterface"],
            resources=[f"{region_account}:subnet/*", f"{region_account}:security-group/*"],
            conditions=in_the_vpc,
        ),
        iam.PolicyStatement(
            sid="ManageNetworkInterfacesOfThePlatformVpc",
            actions=[
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ],
            resources=[f"{region_account}:network-interface/*"],
            conditions=in_the_vpc,
        ),
    ]


def vpc_network_interface_suppressions() -> list[dict]:
    """For a traced function in the VPC (one `Resource::*` suppression covers both)."""
    return [
        {
            "id": "AwsSolutions-IAM5",
            "reason": "X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords) and "
            "ec2:DescribeNetworkInterfaces and ec2:DescribeSubnets (Lambda looks up the "
            "function's interfaces) have no resource types: AWS allows them on * only",
            "appliesTo": ["Resource::*"],
        },
        {
            "id": "AwsSolutions-IAM5",
            "reason": "Lambda creates the function's network interfaces (ids unknown before) "
            "in the platform VPC's private subnets; the subnets and security groups they use, "
            "and the interfaces it manages later, are limited to that VPC by ec2:Vpc",
            "appliesTo": [
                f"Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:{r}/*"
                for r in ENI_RESOURCE_TYPES
            ],
        },
    ]
