"""Template values as the deployed account would see them: every Ref, Fn::GetAtt,
Fn::ImportValue, Fn::Join, Fn::Select and Fn::Split of the synthesized assembly resolved,
across stacks, to realistic physical values (the names the stacks set, ARNs built the way
AWS builds them, made-up ids for what AWS generates: subnets, security groups, keys)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

ACCOUNT = "123456789012"
PARTITION = "aws"


def _id(prefix: str, lid: str, length: int = 17) -> str:
    return f"{prefix}{hashlib.sha256(lid.encode()).hexdigest()[:length]}"


def _key_id(lid: str) -> str:
    h = hashlib.sha256(lid.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# Fn::GetAtt Arn, by resource type: `name` is the resource's name (its Ref), a key's id
ARN_FORMATS = {
    "AWS::IAM::Role": "arn:{partition}:iam::{account}:role{path}{name}",
    "AWS::IAM::InstanceProfile": "arn:{partition}:iam::{account}:instance-profile{path}{name}",
    "AWS::S3::Bucket": "arn:{partition}:s3:::{name}",
    "AWS::Lambda::Function": "arn:{partition}:lambda:{region}:{account}:function:{name}",
    "AWS::KMS::Key": "arn:{partition}:kms:{region}:{account}:key/{name}",
    "AWS::Logs::LogGroup": "arn:{partition}:logs:{region}:{account}:log-group:{name}:*",
    "AWS::Kinesis::Stream": "arn:{partition}:kinesis:{region}:{account}:stream/{name}",
    "AWS::StepFunctions::StateMachine": "arn:{partition}:states:{region}:{account}:stateMachine:{name}",
    "AWS::SQS::Queue": "arn:{partition}:sqs:{region}:{account}:{name}",
    "AWS::DynamoDB::Table": "arn:{partition}:dynamodb:{region}:{account}:table/{name}",
    "AWS::Events::EventBus": "arn:{partition}:events:{region}:{account}:event-bus/{name}",
}
# An enhanced fan-out consumer's ARN ends in its creation time (seconds since the epoch).
CONSUMER_CREATED = 1764590400
# where a name is not the resource's Ref
NAME_PROPERTY = {
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::SQS::Queue": "QueueName",
}


class Assembly:
    def __init__(self, templates: dict[str, dict], region: str):
        self.templates, self.region = templates, region
        self.exports: dict[str, tuple[str, Any]] = {}
        for kind, template in templates.items():
            for output in template.get("Outputs", {}).values():
                name = output.get("Export", {}).get("Name")
                if isinstance(name, str):
                    self.exports[name] = (kind, output["Value"])

    # ------------------------------------------------------------------ resources
    def resource(self, kind: str, lid: str) -> dict:
        return self.templates[kind]["Resources"][lid]

    def resources(self, type_: str):
        """(kind, logical id, resource) of every resource of this type in the assembly."""
        for kind, template in self.templates.items():
            for lid, resource in template.get("Resources", {}).items():
                if resource["Type"] == type_:
                    yield kind, lid, resource

    def props(self, kind: str, lid: str) -> dict:
        return self.resolve(kind, self.resource(kind, lid).get("Properties", {}))

    # ------------------------------------------------------------------ values
    def resolve(self, kind: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(kind, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self._ref(kind, arg)
            if fn == "Fn::GetAtt":
                lid, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._get_att(kind, lid, attribute)
            if fn == "Fn::ImportValue":
                name = self.resolve(kind, arg)
                assert name in self.exports, f"{kind}: imports {name!r}, which no stack exports"
                exporter, exported = self.exports[name]
                return self.resolve(exporter, exported)
            if fn == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.resolve(kind, p)) for p in parts)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(kind, items)[int(self.resolve(kind, index))]
            if fn == "Fn::Split":
                separator, text = arg
                return str(self.resolve(kind, text)).split(separator)
            if fn == "Fn::Sub" and isinstance(arg, str):
                return re.sub(
                    r"\$\{([^}]+)\}",
                    lambda m: str(
                        self.resolve(
                            kind,
                            {"Ref": m.group(1)}
                            if "." not in m.group(1)
                            else {"Fn::GetAtt": m.group(1).split(".", 1)},
                        )
                    ),
                    arg,
                )
        return {k: self.resolve(kind, v) for k, v in value.items()}

    def _ref(self, kind: str, name: str) -> Any:
        pseudo = {
            "AWS::Partition": PARTITION,
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": f"stack-{kind}",
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        template = self.templates[kind]
        if name in template.get("Parameters", {}):
            return template["Parameters"][name].get("Default", f"<parameter {name}>")
        resource = self.resource(kind, name)
        type_, props = resource["Type"], resource.get("Properties", {})
        named = {
            "AWS::IAM::Role": "RoleName",
            "AWS::IAM::InstanceProfile": "InstanceProfileName",
            "AWS::S3::Bucket": "BucketName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::EMR::SecurityConfiguration": "Name",
            "AWS::Glue::Job": "Name",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::Kinesis::Stream": "Name",
            "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName",
            "AWS::Athena::WorkGroup": "Name",
            "AWS::SQS::Queue": None,
            "AWS::DynamoDB::Table": "TableName",
            "AWS::Events::EventBus": "Name",
        }
        if named.get(type_) and named[type_] in props:
            return self.resolve(kind, props[named[type_]])
        if type_ == "AWS::Glue::Database":
            return self.resolve(kind, props["DatabaseInput"]["Name"])
        if type_ == "AWS::Glue::Table":
            return self.resolve(kind, props["TableInput"]["Name"])
        if type_ == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{self.region}:{ACCOUNT}:{self.resolve(kind, props.get('TopicName', name))}"
        if type_ == "AWS::EC2::Subnet":
            return _id("subnet-", name)
        if type_ == "AWS::EC2::SecurityGroup":
            return _id("sg-", name)
        if type_ == "AWS::EC2::VPC":
            return _id("vpc-", name)
        if type_ == "AWS::KMS::Key":
            return _key_id(name)
        if type_ == "AWS::StepFunctions::StateMachine":
            return self._get_att(kind, name, "Arn")
        return f"{name}-{_id('', name, 8)}"

    def _get_att(self, kind: str, lid: str, attribute: str) -> Any:
        resource = self.resource(kind, lid)
        type_, props = resource["Type"], resource.get("Properties", {})
        if attribute == "Arn" and type_ in ARN_FORMATS:
            name = (
                self.resolve(kind, props[NAME_PROPERTY[type_]])
                if NAME_PROPERTY.get(type_) in props
                else _key_id(lid)
                if type_ == "AWS::KMS::Key"
                else lid
                if type_ in NAME_PROPERTY
                else self._ref(kind, lid)
            )
            return ARN_FORMATS[type_].format(
                partition=PARTITION,
                region=self.region,
                account=ACCOUNT,
                path=props.get("Path", "/"),
                name=name,
            )
        if attribute == "ConsumerARN" and type_ == "AWS::Kinesis::StreamConsumer":
            stream = self.resolve(kind, props["StreamARN"])
            consumer = self.resolve(kind, props["ConsumerName"])
            return f"{stream}/consumer/{consumer}:{CONSUMER_CREATED}"
        if attribute == "GroupId" and type_ == "AWS::EC2::SecurityGroup":
            return _id("sg-", lid)
        if attribute == "TopicArn" and type_ == "AWS::SNS::Topic":
            return self._ref(kind, lid)
        if attribute == "TopicName" and type_ == "AWS::SNS::Topic":
            return self.resolve(kind, props.get("TopicName", lid))
        if attribute == "QueueName" and type_ == "AWS::SQS::Queue":
            return self.resolve(kind, props.get("QueueName", lid))
        if attribute == "KeyId" and type_ == "AWS::KMS::Key":
            return _key_id(lid)
        if attribute == "Name" and type_ == "AWS::Glue::Job":
            return self._ref(kind, lid)
        return f"<{lid}.{attribute}>"
