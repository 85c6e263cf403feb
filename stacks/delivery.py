"""DeliveryStack: the opt-in CDK Pipelines pipeline (spec/platform.yaml `delivery:`), in the
tooling account. Source (a CodeConnections connection, one branch) -> synth (`make setup`,
`npx cdk synth`, as a developer runs them) -> self-mutation -> checks (`make lint`,
`make test`; `make scan` over the synthesized cdk.out) -> each environment in order, as a
PlatformStage that calls build_platform, the same stacks `cdk deploy --all` deploys:
dev, a smoke check against dev with `dp --target aws`, a manual approval, prod.

Cross-account: the artifact bucket's key is a customer-managed KMS key the environments'
deploy roles may use (cross_account_keys), and each stage deploys through the CDK bootstrap
roles of its own account (bootstrapped with `--trust <tooling account>`)."""

from __future__ import annotations

import re

from aws_cdk import Aspects, CfnResource, Duration, Stack, Stage, pipelines
from aws_cdk import Environment as CdkEnvironment
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks, NagPackSuppression, NagSuppressions
from constructs import Construct

from dataplatform import layout
from dataplatform.naming import Names, pascal_case
from dataplatform.spec import Platform
from stacks.constructs.checkov import skip
from stacks.constructs.nag import arn_token
from stacks.platform import PlatformStacks, build_platform

SYNTH_COMMANDS = ("make setup", "npx cdk synth -c delivery=true --quiet")
TEST_COMMANDS = ("make lint", "make test")
SCAN_COMMANDS = ("make scan",)
# The CodeBuild image with Python 3.11 and Java 17 (Spark's JVM for the test suite); Node for
# the CDK CLI and jsii comes from node_modules (package.json pins it).
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
RUNTIME_VERSIONS = {"python": "3.11", "java": "corretto17", "nodejs": "20"}
# The suite runs Spark locally: LARGE is 8 vCPUs and 15 GB (MEDIUM's 7 GB is too tight).
COMPUTE_TYPE = codebuild.ComputeType.LARGE
SMOKE_PROFILE = "smoke"


def smoke_commands(platform: Platform, env: str) -> list[str]:
    """Read-only `dp --target aws` calls that go through the deployed stacks: the spec as
    synthesized, a query of a curated table (the workgroup, its KMS-encrypted results, the
    encrypted catalog, the curated bucket and the lake key), each served model's endpoint
    state (an endpoint not yet deployed is an answer too: NotDeployed)."""
    dp = f"AWS_PROFILE={SMOKE_PROFILE} .venv/bin/dp --target aws --env {env}"
    table = platform.datasets[0].name
    return [
        "make setup",
        # CodeBuild's credentials, then the dev account's smoke role (SmokeCheckAccessStack)
        f"aws configure set profile.{SMOKE_PROFILE}.role_arn $SMOKE_ROLE_ARN",
        f"aws configure set profile.{SMOKE_PROFILE}.credential_source EcsContainer",
        ".venv/bin/dp check",
        f'{dp} query "SELECT COUNT(*) AS n FROM {table}"',
        *(f"{dp} serve {m.name}" for m in platform.models if m.serving is not None),
    ]


def build_options(timeout_minutes: int) -> pipelines.CodeBuildOptions:
    return pipelines.CodeBuildOptions(
        build_environment=codebuild.BuildEnvironment(
            build_image=BUILD_IMAGE, compute_type=COMPUTE_TYPE, privileged=False
        ),
        partial_build_spec=codebuild.BuildSpec.from_object(
            {"phases": {"install": {"runtime-versions": RUNTIME_VERSIONS}}}
        ),
        timeout=Duration.minutes(timeout_minutes),
    )


class SmokeCheckAccessStack(Stack):
    """In the environment's account: the role the pipeline's smoke check assumes, allowed
    exactly what its `dp` calls do. Its name is one of the platform's (`<prefix>-*`), which
    the lake key's policy admits."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        platform: Platform,
        stacks: PlatformStacks,
        trusted_role_arn: str,
        **kwargs,
    ):
        super().__init__(scope, construct_id, **kwargs)
        # the stack's partition: a literal for a known region (no Fn::Join in the ARNs)
        region, account, partition = names.region, names.account, self.partition
        table = platform.datasets[0].name
        curated, results = stacks.storage.lake.curated, stacks.storage.lake.athena_results
        self.role = iam.Role(
            self,
            "Role",
            role_name=names.role("smoke-check"),
            description=f"{names.prefix}: the delivery pipeline's read-only smoke check",
            assumed_by=iam.ArnPrincipal(trusted_role_arn),
            max_session_duration=Duration.hours(1),
        )
        workgroup = f"arn:{partition}:athena:{region}:{account}:workgroup/{names.workgroup}"
        glue_arn = f"arn:{partition}:glue:{region}:{account}"
        statements = [
            iam.PolicyStatement(
                sid="QueryInThePlatformWorkgroup",
                actions=[
                    "athena:GetWorkGroup",
                    "athena:StartQueryExecution",
                    "athena:GetQueryExecution",
                    "athena:GetQueryResults",
                    "athena:StopQueryExecution",
                ],
                resources=[workgroup],
            ),
            iam.PolicyStatement(
                sid="ReadTheQueriedTablesDefinition",
                actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"],
                resources=[
                    f"{glue_arn}:catalog",
                    f"{glue_arn}:database/{names.curated_database}",
                    f"{glue_arn}:table/{names.curated_database}/{names.table(table)}",
                ],
            ),
            iam.PolicyStatement(
                sid="ListTheQueriedBuckets",
                actions=["s3:ListBucket", "s3:GetBucketLocation"],
                resources=[curated.bucket_arn, results.bucket_arn],
            ),
            iam.PolicyStatement(
                sid="ReadTheQueriedTable",
                actions=["s3:GetObject"],
                resources=[curated.arn_for_objects(f"{layout.curated_prefix(table)}*")],
            ),
            iam.PolicyStatement(
                sid="WriteAndReadQueryResults",
                actions=["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                resources=[results.arn_for_objects(f"{layout.ATHENA_RESULTS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="LakeKeyThroughTheQueryServicesOnly",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[stacks.storage.lake.key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": [
                            f"{service}.{region}.amazonaws.com"
                            for service in ("athena", "glue", "s3")
                        ]
                    }
                },
            ),
        ]
        endpoints = [
            f"arn:{partition}:sagemaker:{region}:{account}:endpoint/{names.endpoint(m.name)}"
            for m in platform.models
            if m.serving is not None
        ]
        if endpoints:
            statements.append(
                iam.PolicyStatement(
                    sid="DescribeTheServedEndpoints",
                    actions=["sagemaker:DescribeEndpoint"],
                    resources=endpoints,
                )
            )
        policy = iam.Policy(self, "Policy", statements=statements)
        policy.attach_to_role(self.role)
        NagSuppressions.add_resource_suppressions(
            policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Athena reads every object of the queried table's prefix and "
                    "writes its results under a new key per query in the results prefix",
                    applies_to=[
                        f"Resource::{arn_token(curated)}/{layout.curated_prefix(table)}*",
                        f"Resource::{arn_token(results)}/{layout.ATHENA_RESULTS_PREFIX}*",
                    ],
                )
            ],
        )


class PlatformStage(Stage):
    """One environment's stacks, built by build_platform as `cdk deploy --all` builds them,
    in that environment's account and region; the pipeline never destroys data."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platform: Platform,
        env_name: str,
        smoke_role_trusts: str | None = None,
    ):
        settings = platform.environment(env_name)
        super().__init__(
            scope,
            construct_id,
            env=CdkEnvironment(account=settings.account, region=settings.region),
        )
        self.env_name = env_name
        self.stacks = build_platform(
            self, platform, env_name=env_name, account=settings.account, destroy_data=False
        )
        self.smoke_access: SmokeCheckAccessStack | None = None
        if smoke_role_trusts is not None:
            names = self.stacks.names
            self.smoke_access = SmokeCheckAccessStack(
                self,
                "SmokeCheckAccess",
                stack_name=names.stack("smoke-check"),
                env=CdkEnvironment(account=settings.account, region=settings.region),
                description=f"{names.prefix}: the role of the delivery pipeline's smoke check",
                names=names,
                platform=platform,
                stacks=self.stacks,
                trusted_role_arn=smoke_role_trusts,
            )

    @property
    def smoke_role_arn(self) -> str:
        names = self.stacks.names
        return f"arn:aws:iam::{names.account}:role/{names.role('smoke-check')}"


class DeliveryStack(Stack):
    """The pipeline and its stages (spec/platform.yaml `delivery:`, enabled)."""

    def __init__(self, scope: Construct, construct_id: str, *, platform: Platform, **kwargs):
        super().__init__(scope, construct_id, **kwargs)
        delivery = platform.delivery
        if delivery.repository is None or delivery.connection_arn is None:
            raise ValueError("DeliveryStack: delivery.repository and connection_arn are required")
        prefix = f"{platform.project}-delivery"
        self.source = pipelines.CodePipelineSource.connection(
            delivery.repository,
            delivery.branch,
            connection_arn=delivery.connection_arn,
            trigger_on_push=True,
        )
        self.synth = pipelines.CodeBuildStep(
            "Synth",
            input=self.source,
            commands=list(SYNTH_COMMANDS),
            primary_output_directory="cdk.out",
        )
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=prefix,
            synth=self.synth,
            self_mutation=True,
            cross_account_keys=True,  # a KMS key on the artifacts the other accounts can use
            enable_key_rotation=True,
            docker_enabled_for_synth=False,
            docker_enabled_for_self_mutation=False,
            code_build_defaults=build_options(timeout_minutes=60),
            synth_code_build_defaults=build_options(timeout_minutes=30),
        )

        # Checks before any environment: the whole suite (cdk-nag, checkov and cfn-lint
        # tests included) and the scanners over what the synth produced.
        self.tests = pipelines.CodeBuildStep(
            "LintAndTest", input=self.source, commands=list(TEST_COMMANDS)
        )
        self.scan = pipelines.CodeBuildStep(
            "ScanTemplates",
            input=self.source,
            additional_inputs={"cdk.out": self.synth},
            commands=list(SCAN_COMMANDS),
        )
        self.pipeline.add_wave("Checks", pre=[self.tests, self.scan])

        first = delivery.environments[0]
        # A fixed name: the first environment's smoke role trusts exactly this role.
        self.smoke_codebuild_role = iam.Role(
            self,
            "SmokeCheckRole",
            role_name=f"{prefix}-smoke-check",
            description=f"{prefix}: CodeBuild of the smoke check against {first}",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
        )
        self.stages: list[PlatformStage] = []
        self.approvals: dict[str, pipelines.ManualApprovalStep] = {}
        self.smoke: pipelines.CodeBuildStep | None = None
        for env in delivery.environments:
            stage = PlatformStage(
                Stage.of(self) or scope,
                pascal_case(env),
                platform=platform,
                env_name=env,
                smoke_role_trusts=(
                    f"arn:aws:iam::{self.account}:role/{prefix}-smoke-check"
                    if env == first
                    else None
                ),
            )
            pre: list[pipelines.Step] = []
            if delivery.needs_approval(env):
                self.approvals[env] = pipelines.ManualApprovalStep(
                    f"Approve{pascal_case(env)}",
                    comment=f"Deploy {platform.project} to {env}: the checks and the "
                    "smoke check passed; approve to roll this commit out",
                )
                pre.append(self.approvals[env])
            post: list[pipelines.Step] = []
            if env == first:
                self.smoke = pipelines.CodeBuildStep(
                    "SmokeCheck",
                    input=self.source,
                    commands=smoke_commands(platform, env),
                    env={"SMOKE_ROLE_ARN": stage.smoke_role_arn},
                    role=self.smoke_codebuild_role,
                    role_policy_statements=[
                        iam.PolicyStatement(
                            sid="AssumeTheSmokeRoleOnly",
                            actions=["sts:AssumeRole"],
                            resources=[stage.smoke_role_arn],
                        )
                    ],
                )
                post.append(self.smoke)
            self.pipeline.add_stage(stage, pre=pre, post=post)
            self.stages.append(stage)

        # The resources exist only once the pipeline is built; then they can be suppressed.
        self.pipeline.build_pipeline()
        self._harden()
        self._nag_suppressions()
        Aspects.of(self).add(AwsSolutionsChecks(verbose=True))

    def _harden(self) -> None:
        """What CDK Pipelines leaves open, closed on its L1s: a versioned artifact bucket,
        and the deploy actions' role ARNs as Fn::Sub (CDK writes an empty-delimiter
        Fn::Join, which cfn-lint's E3703 refuses)."""
        bucket = self.pipeline.pipeline.artifact_bucket.node.default_child
        assert isinstance(bucket, s3.CfnBucket)
        bucket.versioning_configuration = s3.CfnBucket.VersioningConfigurationProperty(
            status="Enabled"  # an overwritten cloud assembly can still be read back
        )
        cfn_pipeline = self.pipeline.pipeline.node.default_child
        assert isinstance(cfn_pipeline, CfnResource)
        stages = self.resolve(cfn_pipeline.stages)  # type: ignore[attr-defined]
        for i, stage in enumerate(stages):
            for j, action in enumerate(stage["actions"]):
                role_arn = (action.get("configuration") or {}).get("RoleArn")
                as_sub = _joins_as_subs(role_arn)
                if as_sub != role_arn:
                    cfn_pipeline.add_property_override(
                        f"Stages.{i}.Actions.{j}.Configuration.RoleArn", as_sub
                    )

    def _policy_document(self, policy: iam.Policy) -> dict:
        """The policy as deployed. The asset-publishing role's codebuild:StartBuild,
        StopBuild and BatchGetBuilds (its CodePipeline actions start the asset projects)
        are scoped from `*` to those projects."""
        document = self.resolve(policy.document.to_json())
        if not policy.node.path.endswith("/Assets/FileRole/DefaultPolicy"):
            return document
        projects = [
            self.resolve(c.project_arn)
            for c in self.node.find_all()
            if isinstance(c, codebuild.Project) and "/Assets/" in c.node.path
        ]
        for statement in document["Statement"]:
            if statement.get("Resource") == "*" and "codebuild:StartBuild" in statement["Action"]:
                statement["Resource"] = projects
        # The whole pipeline is built: nothing grants this role more after this point.
        cfn = policy.node.default_child
        assert isinstance(cfn, iam.CfnPolicy)
        cfn.policy_document = document
        return document

    def _nag_suppressions(self) -> None:
        """CDK Pipelines' own grants, role by role: each wildcard finding (as cdk-nag spells
        it, read from the role's policy) suppressed with the reason that covers it; a
        wildcard no reason covers is left for cdk-nag to report."""
        for construct in self.node.find_all():
            if not isinstance(construct, iam.Role):
                continue
            policy = construct.node.try_find_child("DefaultPolicy")
            if not isinstance(policy, iam.Policy):
                continue
            by_reason: dict[str, list[str]] = {}
            for finding in _wildcards(self._policy_document(policy)):
                reason = _pipeline_grant_reason(finding)
                if reason is not None:
                    by_reason.setdefault(reason, []).append(finding)
            NagSuppressions.add_resource_suppressions(
                policy,
                [
                    NagPackSuppression(id="AwsSolutions-IAM5", reason=reason, applies_to=found)
                    for reason, found in by_reason.items()
                ],
            )
        bucket = self.pipeline.pipeline.artifact_bucket
        NagSuppressions.add_resource_suppressions(
            bucket,
            [
                NagPackSuppression(
                    id="AwsSolutions-S1",
                    reason="The pipeline's artifact bucket holds only its own source zips and "
                    "cloud assemblies, written and read by the pipeline's roles; CodePipeline "
                    "and CloudTrail record every execution and who started or approved it",
                )
            ],
        )
        skip(
            bucket,
            "CKV_AWS_18",
            "the pipeline's artifact bucket: only the pipeline's roles read and write it, "
            "each execution is recorded by CodePipeline and CloudTrail",
        )


def _joins_as_subs(value):
    """Fn::Join ["", [strings and Refs]] as the equivalent Fn::Sub, everywhere in `value`."""
    if isinstance(value, list):
        return [_joins_as_subs(v) for v in value]
    if not isinstance(value, dict):
        return value
    join = value.get("Fn::Join")
    if len(value) == 1 and join and join[0] == "":
        parts = join[1]
        if all(isinstance(p, str) or (isinstance(p, dict) and set(p) == {"Ref"}) for p in parts):
            return {
                "Fn::Sub": "".join(
                    p if isinstance(p, str) else "${" + p["Ref"] + "}" for p in parts
                )
            }
    return {k: _joins_as_subs(v) for k, v in value.items()}


def _render(value) -> str:
    """A policy value as cdk-nag spells it in a finding: Fn::Join flattened, GetAtt as
    <LogicalId.Attr>, Ref as <LogicalId>."""
    if isinstance(value, str):
        return value
    ((fn, arg),) = value.items()
    if fn == "Fn::Join":
        return arg[0].join(_render(part) for part in arg[1])
    if fn == "Fn::GetAtt":
        return f"<{arg[0]}.{arg[1]}>"
    if fn == "Ref":
        return f"<{arg}>"
    if fn == "Fn::Sub":
        return arg if isinstance(arg, str) else arg[0]
    raise ValueError(f"cannot render {value!r}")


def _wildcards(document: dict) -> list[str]:
    found: list[str] = []
    for statement in document.get("Statement", []):
        for key, kind in (("Action", "Action"), ("Resource", "Resource")):
            values = statement.get(key, [])
            for value in values if isinstance(values, list) else [values]:
                text = _render(value)
                if "*" in text and f"{kind}::{text}" not in found:
                    found.append(f"{kind}::{text}")
    return found


# What CDK Pipelines grants its roles, and why the wildcard in each is as narrow as it gets.
_PIPELINE_GRANTS = (
    (
        re.compile(r"^Action::s3:(GetBucket|GetObject|List|Abort|DeleteObject)\*$"),
        "CDK Pipelines' grant on the pipeline's own artifact bucket (grantRead/grantReadWrite "
        "spell these action groups): the only bucket in its statement",
    ),
    (
        re.compile(r"^Resource::<PipelineArtifactsBucket[0-9A-F]{8}\.Arn>/\*$"),
        "The pipeline's artifact bucket: each execution writes and reads objects under keys "
        "it names as it runs (source zip, cloud assembly), so the grant is on its objects",
    ),
    (
        re.compile(r"^Action::kms:(GenerateDataKey|ReEncrypt)\*$"),
        "The artifact bucket's own KMS key only: SSE-KMS needs the data-key variants "
        "(GenerateDataKey, GenerateDataKeyWithoutPlaintext) these names cover",
    ),
    (
        re.compile(
            r"^Resource::arn:[^:]+:logs:[^:]+:\d{12}:log-group:/aws/codebuild/<[A-Za-z0-9]+>:\*$"
        ),
        "The CodeBuild project's own log group: a build creates a new log stream in it, "
        "named per build",
    ),
    (
        re.compile(r"^Resource::arn:[^:]+:codebuild:[^:]+:\d{12}:report-group/<[A-Za-z0-9]+>-\*$"),
        "The CodeBuild project's own report groups (named after the project), which "
        "CodeBuild creates per report it writes",
    ),
    (
        re.compile(
            r"^Resource::arn:[^:]+:(logs|codebuild):[^:]+:\d{12}:(log-group:/aws/codebuild|report-group)/\*$"
        ),
        "The asset-publishing CodeBuild projects: CDK Pipelines adds one per asset as the "
        "stages' assets change, so their log and report groups cannot be named in advance",
    ),
    (
        re.compile(r"^Resource::arn:\*:iam::\d{12}:role/\*$"),
        "sts:AssumeRole only on the CDK bootstrap roles (the condition on the "
        "aws-cdk:bootstrap-role tag: deploy, file- and image-publishing) for self-mutation",
    ),
    (
        re.compile(r"^Resource::\*$"),
        "cloudformation:DescribeStacks and s3:ListBucket (self-mutation's cdk deploy) and "
        "codebuild:StartBuild/BatchGetBuilds (asset publishing) as CDK Pipelines grants them",
    ),
)


def _pipeline_grant_reason(finding: str) -> str | None:
    return next((reason for pattern, reason in _PIPELINE_GRANTS if pattern.match(finding)), None)
