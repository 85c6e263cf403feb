"""One CDK synth per variant per test session; tests read templates from the assembly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import aws_cdk.cloud_assembly_schema  # noqa: F401 (see below)
import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from dataplatform.naming import Names
from dataplatform.spec import Platform, load_spec
from stacks.platform import REPO_ROOT, PlatformStacks, build_platform, cdk_json_context

ACCOUNT = "123456789012"
STACK_KINDS = (
    "storage",
    "streaming",
    "catalog",
    "analytics",
    "audit",
    "network",
    "emr",
    "monitoring",
    "ml",
    "orchestration",
    "serving",
    "governance",
)


@dataclass
class Synth:
    """A synthesized platform: its stacks' templates, raw JSON and synthesis messages."""

    env: str
    destroy_data: bool
    platform: Platform
    stacks: PlatformStacks
    outdir: Path
    templates: dict[str, dict]
    messages: dict[str, list]

    @property
    def names(self) -> Names:
        return self.stacks.names

    def template(self, kind: str) -> Template:
        return Template.from_json(self.templates[kind])

    def resources(self, kind: str, type_: str) -> dict[str, dict]:
        return {
            lid: r for lid, r in self.templates[kind]["Resources"].items() if r["Type"] == type_
        }

    def warnings(self, kind: str) -> list[str]:
        return [str(m.entry.data) for m in self.messages[kind] if m.level.name == "WARNING"]


def synthesize(
    env: str, destroy_data: bool, outdir: Path, platform: Platform | None = None
) -> Synth:
    """The shipped spec's platform, or `platform` (a variant of it a test builds)."""
    platform = platform or load_spec(REPO_ROOT / "spec")
    app = App(outdir=str(outdir), context=cdk_json_context())
    stacks = build_platform(app, platform, env_name=env, account=ACCOUNT, destroy_data=destroy_data)
    assembly = app.synth()
    templates, messages = {}, {}
    for kind, stack in zip(STACK_KINDS, stacks.all, strict=True):
        artifact = assembly.get_stack_artifact(stack.artifact_id)
        templates[kind] = artifact.template
        # The messages hold cloud_assembly_schema.MetadataEntry objects, and jsii resolves
        # them only if that module is imported: the import above. Without it the synth
        # failed ("Unknown interface") whenever these tests ran first in a process.
        messages[kind] = list(artifact.messages)
    return Synth(
        env=env,
        destroy_data=destroy_data,
        platform=platform,
        stacks=stacks,
        outdir=outdir,
        templates=templates,
        messages=messages,
    )


_cache: dict[tuple[str, bool], Synth] = {}


@pytest.fixture(scope="session")
def synth_variant(tmp_path_factory):
    """synth_variant(env, destroy_data) -> Synth, synthesized at most once per session."""

    def get(env: str, destroy_data: bool = False) -> Synth:
        key = (env, destroy_data)
        if key not in _cache:
            outdir = tmp_path_factory.mktemp(f"cdk-{env}-{'destroy' if destroy_data else 'retain'}")
            _cache[key] = synthesize(env, destroy_data, outdir)
        return _cache[key]

    return get


@pytest.fixture(scope="session")
def dev(synth_variant) -> Synth:
    return synth_variant("dev")


@pytest.fixture(scope="session")
def prod(synth_variant) -> Synth:
    return synth_variant("prod")


@pytest.fixture(scope="session", params=["dev", "prod"])
def each_env(request, synth_variant) -> Synth:
    return synth_variant(request.param)


def logical_id(synth: Synth, kind: str, type_: str, **properties) -> str:
    """The logical id of the one resource of `type_` whose properties include these."""
    matches = [
        lid
        for lid, r in synth.resources(kind, type_).items()
        if all(r.get("Properties", {}).get(k) == v for k, v in properties.items())
    ]
    assert len(matches) == 1, f"{type_} {properties}: {matches}"
    return matches[0]


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True)


# --- reading template values: cross-stack imports resolved to what the storage stack exports


def s3_arn(bucket: str) -> str:
    """How `resolve` renders a lake bucket's ARN."""
    return f"arn:aws:s3:::{bucket}"


def lake_key(synth: Synth, attribute: str = "Arn") -> str:
    """How `resolve` renders the lake key (found by its alias from naming)."""
    aliases = [
        r
        for r in synth.resources("storage", "AWS::KMS::Alias").values()
        if r["Properties"]["AliasName"] == synth.names.lake_key_alias
    ]
    assert len(aliases) == 1, aliases
    target = aliases[0]["Properties"]["TargetKeyId"]
    key_lid = target["Fn::GetAtt"][0] if "Fn::GetAtt" in target else target["Ref"]
    return f"<key {key_lid}.{attribute}>"


def _storage_value(synth: Synth, value: dict) -> str:
    resources = synth.templates["storage"]["Resources"]
    lid, attribute = (value["Ref"], "Ref") if "Ref" in value else value["Fn::GetAtt"]
    resource = resources[lid]
    if resource["Type"] == "AWS::S3::Bucket":
        name = resource["Properties"]["BucketName"]
        if attribute == "Ref":
            return name
        if attribute == "Arn":
            return s3_arn(name)
    if resource["Type"] == "AWS::KMS::Key":
        return f"<key {lid}.{attribute}>"
    return f"<storage {lid}.{attribute}>"


def resolve(synth: Synth, value) -> str:
    """A template value as one string: Fn::Join flattened, storage exports replaced by the
    bucket names/ARNs they stand for, in-stack references as ${LogicalId[.Attr]}."""
    if isinstance(value, (str, int, float, bool)):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Fn::Join":
            separator, parts = arg
            return separator.join(resolve(synth, p) for p in parts)
        if fn == "Fn::ImportValue":
            exports = {
                o["Export"]["Name"]: o["Value"]
                for o in synth.templates["storage"].get("Outputs", {}).values()
                if "Export" in o
            }
            assert arg in exports, f"import {arg!r} is not an export of the storage stack"
            return _storage_value(synth, exports[arg])
        if fn == "Ref":
            return f"${{{arg}}}"
        if fn == "Fn::GetAtt":
            return f"${{{arg[0]}.{arg[1]}}}"
    raise AssertionError(f"cannot resolve {value!r}")
