"""Services such as Firehose, Glue and Lambda check their role's permissions when the
resource is created: the resource must wait for the role's inline policy, which a Ref to
the role alone does not ensure."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import IConstruct


def wait_for_role_policy(resource: IConstruct, role: iam.Role) -> None:
    policy = role.node.try_find_child("DefaultPolicy")
    if policy is None:
        raise ValueError(f"role {role.node.path} has no inline policy to wait for")
    resource.node.add_dependency(policy)
