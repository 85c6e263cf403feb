"""DeliveryStack: the CDK Pipelines pipeline, from one synth of a spec variant with delivery
enabled (a tooling account, dev and prod in two other accounts): the source, synth and
self-mutation, the checks (tests, scanners), the stages in order dev -> smoke check ->
approval -> prod, each environment's stacks in its own account, the artifacts' KMS key, the
roles written here, and cdk-nag, cfn-lint and checkov over the pipeline's templates. With
the shipped spec (delivery off) app.py builds the direct stacks, no pipeline."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from aws_cdk import App

from dataplatform.spec import Platform, SpecError, load_spec
from scripts.scan_templates import cfn_lint_errors, checkov_problems, checkov_report
from stacks.app import build_app
from stacks.delivery import (
    RUNTIME_VERSIONS,
    SCAN_COMMANDS,
    SYNTH_COMMANDS,
    TEST_COMMANDS,
    DeliveryStack,
    PlatformStage,
)
from stacks.platform import REPO_ROOT, PlatformStacks, cdk_json_context
from tests.infra.conftest import STACK_KINDS
from tests.infra.test_nag_and_lint import suppressions

TOOLING, ACCOUNTS = "111111111111", {"dev": "222222222222", "prod": "333333333333"}
REGION = "eu-west-1"
CONNECTION = (
    "arn:aws:codeconnections:eu-west-1:111111111111:connection/0f6ec6a4-2b1b-4d2c-9a3e-7a1f2f1c5a9e"
)
REPOSITORY, BRANCH = "acme/dataplatform", "main"


def delivery_variant(platform: Platform) -> Platform:
    """The shipped platform with delivery on: dev and prod in accounts of their own."""
    environments = {
        name: dataclasses.replace(env, account=ACCOUNTS[name])
        for name, env in platform.environments.items()
    }
    delivery = dataclasses.replace(
        platform.delivery,
        enabled=True,
        repository=REPOSITORY,
        branch=BRANCH,
        connection_arn=CONNECTION,
        account=TOOLING,
        region=REGION,
    )
    return dataclasses.replace(platform, environments=environments, delivery=delivery)


@dataclass
class DeliverySynth:
    stack: DeliveryStack
    outdir: Path
    template: dict
    messages: list
    stage_templates: dict[str, dict[str, dict]]  # env -> stack name -> template
    stage_messages: dict[str, list]  # env -> every message of its stacks
    stage_envs: dict[str, set[str]]  # env -> its stacks' aws://account/region

    def resources(self, type_: str) -> dict[str, dict]:
        return {k: r for k, r in self.template["Resources"].items() if r["Type"] == type_}

    @property
    def stages(self) -> list[dict]:
        (pipeline,) = self.resources("AWS::CodePipeline::Pipeline").values()
        return pipeline["Properties"]["Stages"]

    def stage(self, name: str) -> dict:
        return next(s for s in self.stages if s["Name"] == name)

    def project(self, action: dict) -> dict:
        return self.template["Resources"][action["Configuration"]["ProjectName"]["Ref"]]

    def buildspec(self, action: dict) -> dict:
        return json.loads(self.project(action)["Properties"]["Source"]["BuildSpec"])

    def policy_of_role(self, role_lid: str) -> list[dict]:
        return [
            st
            for p in self.resources("AWS::IAM::Policy").values()
            if {"Ref": role_lid} in p["Properties"]["Roles"]
            for st in p["Properties"]["PolicyDocument"]["Statement"]
        ]


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> DeliverySynth:
    """The one synth of this module (the pipeline and both environments' stages)."""
    outdir = tmp_path_factory.mktemp("cdk-delivery")
    app = App(outdir=str(outdir), context=cdk_json_context())
    stack = build_app(app, delivery_variant(load_spec(REPO_ROOT / "spec")))
    assert isinstance(stack, DeliveryStack)
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    stage_templates, stage_messages, stage_envs = {}, {}, {}
    for stage in stack.stages:
        stage_assembly = stage.synth()  # built by the pipeline: the same assembly
        stage_templates[stage.env_name] = {a.stack_name: a.template for a in stage_assembly.stacks}
        stage_messages[stage.env_name] = [m for a in stage_assembly.stacks for m in a.messages]
        stage_envs[stage.env_name] = {
            f"aws://{a.environment.account}/{a.environment.region}" for a in stage_assembly.stacks
        }
    return DeliverySynth(
        stack=stack,
        outdir=outdir,
        template=artifact.template,
        messages=list(artifact.messages),
        stage_templates=stage_templates,
        stage_messages=stage_messages,
        stage_envs=stage_envs,
    )


# ----------------------------------------------------------------------------- the pipeline


def test_the_source_is_the_repository_branch_behind_the_connection(delivery):
    (source,) = delivery.stage("Source")["Actions"]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["ConnectionArn"] == CONNECTION
    assert source["Configuration"]["FullRepositoryId"] == REPOSITORY
    assert source["Configuration"]["BranchName"] == BRANCH


def test_synth_runs_make_setup_then_cdk_synth_into_cdk_out(delivery):
    (synth,) = delivery.stage("Build")["Actions"]
    spec = delivery.buildspec(synth)
    assert spec["phases"]["build"]["commands"] == list(SYNTH_COMMANDS)
    assert spec["phases"]["build"]["commands"][0] == "make setup"
    assert spec["phases"]["build"]["commands"][1].startswith("npx cdk synth")
    assert spec["artifacts"]["base-directory"] == "cdk.out"


def test_every_build_runs_on_standard_7_with_python_3_11_and_java_17(delivery):
    projects = delivery.resources("AWS::CodeBuild::Project")
    ours = {
        lid: p for lid, p in projects.items() if "Assets" not in lid and "SelfMutation" not in lid
    }
    assert len(ours) == 4  # synth, tests, scan, smoke
    for lid, project in ours.items():
        environment = project["Properties"]["Environment"]
        assert environment["Image"] == "aws/codebuild/standard:7.0", lid
        assert environment["ComputeType"] == "BUILD_GENERAL1_LARGE", lid
        assert environment["PrivilegedMode"] is False, lid  # docker is not needed
        spec = json.loads(project["Properties"]["Source"]["BuildSpec"])
        assert spec["phases"]["install"]["runtime-versions"] == RUNTIME_VERSIONS, lid
        assert RUNTIME_VERSIONS["python"] == "3.11" and RUNTIME_VERSIONS["java"] == "corretto17"


def test_the_pipeline_mutates_itself_before_anything_else(delivery):
    names = [s["Name"] for s in delivery.stages]
    assert names[:3] == ["Source", "Build", "UpdatePipeline"]
    (mutate,) = delivery.stage("UpdatePipeline")["Actions"]
    assert mutate["Name"] == "SelfMutate"
    commands = delivery.buildspec(mutate)["phases"]["build"]["commands"]
    assert any(c.startswith("cdk -a . deploy Delivery") for c in commands), commands


def test_checks_run_lint_test_and_the_scanners_over_the_synth_output(delivery):
    actions = {a["Name"]: a for a in delivery.stage("Checks")["Actions"]}
    assert set(actions) == {"LintAndTest", "ScanTemplates"}
    tests = delivery.buildspec(actions["LintAndTest"])["phases"]["build"]["commands"]
    assert tests == list(TEST_COMMANDS) == ["make lint", "make test"]
    scan = actions["ScanTemplates"]
    assert delivery.buildspec(scan)["phases"]["build"]["commands"] == list(SCAN_COMMANDS)
    # the scanners read the synthesized cloud assembly next to the checkout
    assert {a["Name"] for a in scan["InputArtifacts"]} == {
        "acme_dataplatform_Source",
        "Synth_Output",
    }
    install = delivery.buildspec(scan)["phases"]["install"]["commands"]
    assert any("cdk.out" in c and "Synth_Output" in c for c in install), install


def test_make_scan_is_the_scanners_script_over_cdk_out():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "scan: setup\n\t$(BIN)/python scripts/scan_templates.py cdk.out" in makefile


def test_stages_run_checks_dev_smoke_approval_prod_in_that_order(delivery):
    names = [s["Name"] for s in delivery.stages]
    assert names.index("Checks") < names.index("Dev") < names.index("Prod") == len(names) - 1
    dev = delivery.stage("Dev")["Actions"]
    smoke = next(a for a in dev if a["Name"] == "SmokeCheck")
    deploys = [a for a in dev if a["ActionTypeId"]["Provider"] == "CloudFormation"]
    assert smoke["RunOrder"] > max(a["RunOrder"] for a in deploys)  # after all of dev
    prod = delivery.stage("Prod")["Actions"]
    approve = next(a for a in prod if a["ActionTypeId"]["Category"] == "Approval")
    assert approve["Name"] == "ApproveProd"
    prod_deploys = [a for a in prod if a["ActionTypeId"]["Provider"] == "CloudFormation"]
    assert approve["RunOrder"] < min(a["RunOrder"] for a in prod_deploys)
    assert not [a for a in dev if a["ActionTypeId"]["Category"] == "Approval"]


def test_the_smoke_check_runs_read_only_dp_calls_against_dev(delivery):
    smoke = next(a for a in delivery.stage("Dev")["Actions"] if a["Name"] == "SmokeCheck")
    spec = delivery.buildspec(smoke)
    commands = spec["phases"]["build"]["commands"]
    assert commands[0] == "make setup"
    dp = [c for c in commands if "dp --target aws --env dev" in c]
    assert any(" query " in c and "SELECT COUNT(*)" in c for c in dp), commands
    assert any(" serve churn" in c for c in dp), commands
    assert all(c.startswith("AWS_PROFILE=smoke ") for c in dp)
    role_arn = f"arn:aws:iam::{ACCOUNTS['dev']}:role/mldp-dev-smoke-check-{REGION}"
    env = {v["name"]: v["value"] for v in smoke_project_env(delivery, smoke)}
    assert env["SMOKE_ROLE_ARN"] == role_arn


def smoke_project_env(delivery, action) -> list[dict]:
    project = delivery.project(action)["Properties"]
    spec = json.loads(project["Source"]["BuildSpec"])
    return [
        {"name": k, "value": v} for k, v in (spec.get("env", {}).get("variables") or {}).items()
    ] + [
        {"name": v["Name"], "value": v["Value"]}
        for v in project["Environment"].get("EnvironmentVariables", [])
    ]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_each_environment_deploys_to_its_own_account_and_region(delivery, env):
    assert delivery.stage_envs[env] == {f"aws://{ACCOUNTS[env]}/{REGION}"}
    stage = delivery.stage(env.capitalize())
    deploys = [a for a in stage["Actions"] if a["ActionTypeId"]["Provider"] == "CloudFormation"]
    assert deploys
    for action in deploys:
        # through the environment's own bootstrap roles (bootstrapped with --trust TOOLING)
        assert f":iam::{ACCOUNTS[env]}:role/cdk-hnb659fds-deploy-role-" in json.dumps(
            action["RoleArn"]
        )
        assert action["Configuration"]["StackName"].startswith(f"mldp-{env}-")
        if action["Configuration"]["ActionMode"] == "CHANGE_SET_REPLACE":  # Prepare
            assert f"cdk-hnb659fds-cfn-exec-role-{ACCOUNTS[env]}-{REGION}" in json.dumps(
                action["Configuration"]["RoleArn"]
            )
    # the same stacks, by name, as `cdk deploy --all -c env=<env>` deploys
    kinds = {n.removeprefix(f"mldp-{env}-") for n in delivery.stage_templates[env]}
    platform_kinds = set(STACK_KINDS)
    assert kinds - platform_kinds == ({"smoke-check"} if env == "dev" else set())
    assert platform_kinds <= kinds


def test_the_pipeline_lives_in_the_tooling_account(delivery):
    assert delivery.stack.account == TOOLING and delivery.stack.region == REGION
    assert delivery.stack.stack_name == "mldp-delivery"


def test_artifacts_are_encrypted_with_a_rotated_key_the_environments_can_use(delivery):
    (bucket,) = delivery.resources("AWS::S3::Bucket").values()
    (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    sse = rule["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "aws:kms"
    (key_lid,) = delivery.resources("AWS::KMS::Key")
    assert sse["KMSMasterKeyID"] == {"Fn::GetAtt": [key_lid, "Arn"]}
    key = delivery.template["Resources"][key_lid]["Properties"]
    assert key["EnableKeyRotation"] is True
    policy = json.dumps(key["KeyPolicy"])
    for account in ACCOUNTS.values():  # the environments' deploy roles decrypt the artifacts
        assert f":iam::{account}:role/cdk-hnb659fds-deploy-role-{account}-{REGION}" in policy
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True


# ----------------------------------------------------------------------------- the roles written here


def test_the_smoke_codebuild_role_may_only_assume_the_dev_smoke_role(delivery):
    (role_lid,) = [
        lid
        for lid, r in delivery.resources("AWS::IAM::Role").items()
        if r["Properties"].get("RoleName") == "mldp-delivery-smoke-check"
    ]
    assume = [s for s in delivery.policy_of_role(role_lid) if "sts:AssumeRole" in str(s["Action"])]
    assert assume == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Resource": f"arn:aws:iam::{ACCOUNTS['dev']}:role/mldp-dev-smoke-check-{REGION}",
            "Sid": "AssumeTheSmokeRoleOnly",
        }
    ]


def smoke_access(delivery) -> dict:
    return delivery.stage_templates["dev"]["mldp-dev-smoke-check"]


def test_the_dev_smoke_role_trusts_only_the_pipelines_smoke_codebuild_role(delivery):
    (role,) = [
        r for r in smoke_access(delivery)["Resources"].values() if r["Type"] == "AWS::IAM::Role"
    ]
    props = role["Properties"]
    # a platform role name: the lake key's policy admits `mldp-dev-*`
    assert props["RoleName"] == f"mldp-dev-smoke-check-{REGION}"
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{TOOLING}:role/mldp-delivery-smoke-check"}
    assert "mldp-prod-smoke-check" not in delivery.stage_templates["prod"]


def test_the_dev_smoke_role_reads_what_its_dp_calls_touch_and_nothing_else(delivery):
    (policy,) = [
        r for r in smoke_access(delivery)["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
    ]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    account = ACCOUNTS["dev"]
    assert statements["QueryInThePlatformWorkgroup"]["Resource"] == (
        f"arn:aws:athena:{REGION}:{account}:workgroup/mldp-dev"
    )
    glue = statements["ReadTheQueriedTablesDefinition"]
    assert set(glue["Action"]) == {"glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"}
    assert all(r.startswith(f"arn:aws:glue:{REGION}:{account}:") for r in glue["Resource"])
    assert not [r for r in glue["Resource"] if "*" in r]
    kms = statements["LakeKeyThroughTheQueryServicesOnly"]
    assert set(kms["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert "Fn::ImportValue" in json.dumps(kms["Resource"])  # the lake key, not `*`
    assert kms["Condition"]["StringEquals"]["kms:ViaService"] == [
        f"{s}.{REGION}.amazonaws.com" for s in ("athena", "glue", "s3")
    ]
    assert statements["DescribeTheServedEndpoints"] == {
        "Action": "sagemaker:DescribeEndpoint",
        "Effect": "Allow",
        "Resource": [
            f"arn:aws:sagemaker:{REGION}:{account}:endpoint/mldp-dev-{model}"
            for model in ("churn", "clv")  # the served models
        ],
        "Sid": "DescribeTheServedEndpoints",
    }
    writes = [
        a
        for s in statements.values()
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        if re.match(r"^(s3:(Put|Abort)|athena:(Start|Stop))", a)
    ]
    assert sorted(writes) == sorted(
        [
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "athena:StartQueryExecution",
            "athena:StopQueryExecution",
        ]
    )
    results = statements["WriteAndReadQueryResults"]
    assert json.dumps(results["Resource"]).endswith('/results/*"]]}')
    for s in statements.values():
        assert s["Resource"] != "*", s["Sid"]


def test_asset_publishing_starts_only_the_asset_projects(delivery):
    statements = [
        st
        for lid, p in delivery.resources("AWS::IAM::Policy").items()
        if "AssetsFileRole" in lid
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    (builds,) = [s for s in statements if "codebuild:StartBuild" in s["Action"]]
    assert builds["Resource"] and builds["Resource"] != "*"
    assert all("PipelineAssetsFileAsset" in r["Fn::GetAtt"][0] for r in builds["Resource"])


# ----------------------------------------------------------------------------- scanners


def nag(messages, level: str) -> list[str]:
    return [
        f"{m.id}: {str(m.entry.data)[:200]}"
        for m in messages
        if m.level.name == level and "AwsSolutions-" in str(m.entry.data)
    ]


@pytest.mark.parametrize("level", ["ERROR", "WARNING"])
def test_nag_is_clean_on_the_pipeline_and_both_stages(delivery, level):
    assert nag(delivery.messages, level) == []
    for env in ("dev", "prod"):
        assert nag(delivery.stage_messages[env], level) == [], env


def test_nag_really_checked_the_pipeline_and_the_smoke_access(delivery):
    for report in ("AwsSolutions--mldp-delivery", "AwsSolutions-Dev-mldp-dev-smoke-check"):
        rows = list(csv.DictReader((delivery.outdir / f"{report}-NagReport.csv").open()))
        assert any(r["Compliance"] == "Compliant" for r in rows), report
        assert not [r for r in rows if r["Compliance"] == "Non-Compliant"], report


def test_every_pipeline_suppression_names_its_findings_and_a_reason(delivery):
    templates = [delivery.template, smoke_access(delivery)]
    for template in templates:
        assert "cdk_nag" not in template.get("Metadata", {})
        for lid, rule in suppressions(template):
            assert len(rule["reason"]) >= 60, (lid, rule)
            if rule["id"] == "AwsSolutions-IAM5":
                assert rule.get("applies_to"), (lid, rule)
    found = {(lid, r["id"]) for lid, r in suppressions(delivery.template)}
    assert {rule for _, rule in found} == {"AwsSolutions-IAM5", "AwsSolutions-S1"}


def pipeline_templates(delivery) -> list[Path]:
    dev = delivery.stack.stages[0]
    assert dev.smoke_access is not None
    return [
        delivery.outdir / f"{delivery.stack.artifact_id}.template.json",
        delivery.outdir / dev.artifact_id / f"{dev.smoke_access.artifact_id}.template.json",
    ]


def test_cfn_lint_finds_no_errors_in_the_pipelines_templates(delivery):
    for template in pipeline_templates(delivery):
        assert template.is_file(), template
        assert cfn_lint_errors(template) == [], template.name


def test_checkov_passes_the_pipelines_templates(delivery, tmp_path):
    for template in pipeline_templates(delivery):
        (tmp_path / template.name).write_text(template.read_text())
    report = checkov_report(tmp_path)
    assert checkov_problems(report) == []
    assert report["summary"]["passed"] > 100


# ----------------------------------------------------------------------------- delivery off


def test_the_shipped_spec_synthesizes_the_direct_stacks_and_no_pipeline():
    app = App(context={**cdk_json_context(), "env": "dev"})
    built = build_app(app, load_spec(REPO_ROOT / "spec"))
    assert isinstance(built, PlatformStacks)
    assert not [c for c in app.node.find_all() if isinstance(c, (DeliveryStack, PlatformStage))]


def test_context_delivery_true_needs_the_same_settings_as_the_spec():
    app = App(context={**cdk_json_context(), "delivery": "true"})
    with pytest.raises(SpecError) as info:
        build_app(app, load_spec(REPO_ROOT / "spec"))
    fields = {p.field for p in info.value.problems}
    assert {"delivery.repository", "delivery.connection_arn"} <= fields
    assert {"environments.dev.account", "environments.prod.account"} <= fields
