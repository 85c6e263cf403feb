"""NetworkStack: VPC over the environment's AZs, private subnets for EMR tagged for EMR's
managed policy, NAT gateways from the settings, the S3 gateway endpoint on every private
route table, and flow logs encrypted with the lake key and kept per environment."""

from __future__ import annotations

import ipaddress

from stacks.constructs.emr_cluster import EMR_MANAGED_TAG
from stacks.network import PRIVATE_SUBNET_MASK
from tests.infra.conftest import Synth, lake_key, resolve


def resources(synth: Synth, type_: str) -> dict[str, dict]:
    return synth.resources("network", type_)


def tags(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource["Properties"].get("Tags", [])}


def private_subnets(synth: Synth) -> dict[str, dict]:
    return {
        lid: r
        for lid, r in resources(synth, "AWS::EC2::Subnet").items()
        if tags(r).get("aws-cdk:subnet-type") == "Private"
    }


def test_vpc_spans_the_environments_azs_with_public_and_private_subnets(each_env):
    net = each_env.platform.environment(each_env.env).network
    (vpc,) = resources(each_env, "AWS::EC2::VPC").values()
    assert vpc["Properties"]["CidrBlock"] == net.cidr
    assert tags(vpc)["Name"] == each_env.names.vpc
    subnets = resources(each_env, "AWS::EC2::Subnet")
    assert len(subnets) == 2 * net.max_azs
    private = private_subnets(each_env)
    assert len(private) == net.max_azs
    # one private subnet per AZ, inside the VPC, of the documented size, no public IPs
    azs = {str(r["Properties"]["AvailabilityZone"]) for r in private.values()}
    assert len(azs) == net.max_azs
    block = ipaddress.ip_network(net.cidr)
    for r in subnets.values():
        assert ipaddress.ip_network(r["Properties"]["CidrBlock"]).subnet_of(block)
        assert r["Properties"]["MapPublicIpOnLaunch"] is False
    for r in private.values():
        assert ipaddress.ip_network(r["Properties"]["CidrBlock"]).prefixlen == PRIVATE_SUBNET_MASK


def test_private_subnets_are_tagged_for_emrs_managed_policy_and_public_ones_are_not(each_env):
    for lid, r in resources(each_env, "AWS::EC2::Subnet").items():
        private = lid in private_subnets(each_env)
        assert (tags(r).get(EMR_MANAGED_TAG[0]) == EMR_MANAGED_TAG[1]) is private, lid


def test_nat_gateways_follow_the_settings(dev, prod):
    assert len(resources(dev, "AWS::EC2::NatGateway")) == 1
    assert len(resources(prod, "AWS::EC2::NatGateway")) == 2
    for synth in (dev, prod):
        expected = synth.platform.environment(synth.env).network.nat_gateways
        assert len(resources(synth, "AWS::EC2::NatGateway")) == expected
        # every private subnet routes 0.0.0.0/0 through a NAT gateway, never the IGW
        private_tables = {
            r["Properties"]["RouteTableId"]["Ref"]
            for r in resources(synth, "AWS::EC2::SubnetRouteTableAssociation").values()
            if r["Properties"]["SubnetId"]["Ref"] in private_subnets(synth)
        }
        routes = [
            r["Properties"]
            for r in resources(synth, "AWS::EC2::Route").values()
            if r["Properties"]["RouteTableId"]["Ref"] in private_tables
        ]
        assert len(routes) == len(private_tables) > 0
        assert all("NatGatewayId" in r and "GatewayId" not in r for r in routes)


def test_s3_gateway_endpoint_serves_every_private_route_table(each_env):
    endpoints = list(resources(each_env, "AWS::EC2::VPCEndpoint").values())
    assert len(endpoints) == 1
    endpoint = endpoints[0]["Properties"]
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert resolve(each_env, endpoint["ServiceName"]).endswith(".s3")
    private_tables = {
        r["Properties"]["RouteTableId"]["Ref"]
        for r in resources(each_env, "AWS::EC2::SubnetRouteTableAssociation").values()
        if r["Properties"]["SubnetId"]["Ref"] in private_subnets(each_env)
    }
    assert {t["Ref"] for t in endpoint["RouteTableIds"]} >= private_tables


def test_flow_logs_are_encrypted_with_the_lake_key_and_kept_per_environment(each_env):
    settings = each_env.platform.environment(each_env.env)
    (flow_log,) = resources(each_env, "AWS::EC2::FlowLog").values()
    props = flow_log["Properties"]
    assert props["ResourceType"] == "VPC"
    assert props["TrafficType"] == settings.network.flow_logs_traffic
    assert props["LogDestinationType"] == "cloud-watch-logs"
    ((group_lid, group),) = [
        (lid, r)
        for lid, r in resources(each_env, "AWS::Logs::LogGroup").items()
        if r["Properties"].get("LogGroupName") == each_env.names.flow_log_group
    ]
    assert props["LogGroupName"] == {"Ref": group_lid}
    assert group["Properties"]["RetentionInDays"] == settings.log_retention_days
    assert resolve(each_env, group["Properties"]["KmsKeyId"]) == lake_key(each_env)
    role_lid = props["DeliverLogsPermissionArn"]["Fn::GetAtt"][0]
    role = resources(each_env, "AWS::IAM::Role")[role_lid]["Properties"]
    assert role["RoleName"] == each_env.names.flow_logs_role
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "vpc-flow-logs.amazonaws.com"
    }


def test_default_security_group_is_emptied(each_env):
    assert len(resources(each_env, "Custom::VpcRestrictDefaultSG")) == 1
