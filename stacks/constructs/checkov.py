"""checkov's skips, written on the resource they are about (its CloudFormation Metadata,
which checkov reads), each with its reason, as the cdk-nag suppressions are."""

from __future__ import annotations

from aws_cdk import CfnResource, Stack
from constructs import IConstruct


def skip(construct: IConstruct, check_id: str, reason: str) -> None:
    """Skip `check_id` on this resource (an L1, or an L2's underlying resource)."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path}: no underlying CloudFormation resource to skip")
    metadata = resource.get_metadata("checkov") or {"skip": []}
    metadata["skip"].append({"id": check_id, "comment": reason})
    resource.add_metadata("checkov", metadata)


# Functions CDK itself adds to a stack, run only by CloudFormation during a deployment.
CDK_PROVIDER_PATHS = {
    "Custom::CDKBucketDeployment": "CDK's BucketDeployment handler (copies job code to the "
    "artifacts bucket during a deployment)",
    "Custom::VpcRestrictDefaultSGCustomResourceProvider": "CDK's provider that empties the "
    "VPC's default security group",
}


def skip_cdk_provider_functions(stack: Stack) -> None:
    """The Lambda checks do not apply to CDK's deployment-time provider functions: invoked
    by CloudFormation once per deployment, synchronously (no DLQ), on AWS APIs only (no VPC
    needed), never in parallel (no reserved concurrency to bound)."""
    for construct in stack.node.find_all():
        if not (
            isinstance(construct, CfnResource)
            and construct.cfn_resource_type == "AWS::Lambda::Function"
        ):
            continue
        path = construct.node.path
        what = next((v for k, v in CDK_PROVIDER_PATHS.items() if f"/{k}" in path), None)
        if what is None:
            continue
        skip(
            construct,
            "CKV_AWS_116",
            f"{what}: CloudFormation invokes it synchronously and "
            "reads its answer, so a dead-letter queue never receives anything",
        )
        skip(construct, "CKV_AWS_117", f"{what}: calls only AWS APIs, nothing in the VPC")
        skip(construct, "CKV_AWS_115", f"{what}: runs once per deployment, never concurrently")
        if "BucketDeployment" in path:
            skip(
                construct,
                "CKV_AWS_173",
                f"{what}: its only environment variable is the AWS CA "
                "bundle path set by CDK, no secret",
            )
