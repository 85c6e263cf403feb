"""How cdk-nag spells a resource's ARN in its findings, for suppressions' `appliesTo`, and
the suppressions several constructs share."""

from __future__ import annotations

from aws_cdk import CfnElement, Stack
from constructs import IConstruct


def arn_token(construct: IConstruct) -> str:
    """`<LogicalId.Arn>` of an L2's underlying resource (in its own stack, which is also how
    a cross-stack reference appears in the finding)."""
    resource = construct.node.default_child
    if not isinstance(resource, CfnElement):
        raise TypeError(f"{construct.node.path}: no underlying CloudFormation resource to name")
    return f"<{Stack.of(resource).get_logical_id(resource)}.Arn>"


def xray_tracing_suppression() -> dict:
    """AwsSolutions-IAM5 on `*` of a traced function's role: X-Ray's actions have no
    resource types."""
    return {
        "id": "AwsSolutions-IAM5",
        "reason": "X-Ray tracing (xray:PutTraceSegments, PutTelemetryRecords) has no "
        "resource-level permissions",
        "appliesTo": ["Resource::*"],
    }
