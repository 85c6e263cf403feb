"""One CDK synth per variant per test session; tests read templates from the assembly."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from dataplatform.naming import Names
from dataplatform.spec import Platform, load_spec
from stacks.platform import REPO_ROOT, PlatformStacks, build_platform, cdk_json_context

ACCOUNT = "123456789012"
STACK_KINDS = ("storage", "streaming", "catalog", "analytics")


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
        return {lid: r for lid, r in self.templates[kind]["Resources"].items()
                if r["Type"] == type_}

    def warnings(self, kind: str) -> list[str]:
        return [str(m.entry.data) for m in self.messages[kind] if m.level.name == "WARNING"]


def synthesize(env: str, destroy_data: bool, outdir: Path) -> Synth:
    platform = load_spec(REPO_ROOT / "spec")
    app = App(outdir=str(outdir), context=cdk_json_context())
    stacks = build_platform(app, platform, env_name=env, account=ACCOUNT,
                            destroy_data=destroy_data)
    assembly = app.synth()
    templates, messages = {}, {}
    for kind, stack in zip(STACK_KINDS, stacks.all):
        artifact = assembly.get_stack_artifact(stack.artifact_id)
        templates[kind] = artifact.template
        messages[kind] = list(artifact.messages)
    return Synth(env=env, destroy_data=destroy_data, platform=platform, stacks=stacks,
                 outdir=outdir, templates=templates, messages=messages)


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
    matches = [lid for lid, r in synth.resources(kind, type_).items()
               if all(r.get("Properties", {}).get(k) == v for k, v in properties.items())]
    assert len(matches) == 1, f"{type_} {properties}: {matches}"
    return matches[0]


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
