"""How cdk-nag spells a resource's ARN in its findings, for suppressions' `appliesTo`."""

from __future__ import annotations

from aws_cdk import Stack
from constructs import IConstruct


def arn_token(construct: IConstruct) -> str:
    """`<LogicalId.Arn>` of an L2's underlying resource (in its own stack, which is also how
    a cross-stack reference appears in the finding)."""
    resource = construct.node.default_child
    return f"<{Stack.of(resource).get_logical_id(resource)}.Arn>"
