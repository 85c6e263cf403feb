"""Provision the local platform as `cdk deploy` provisions an account: the environment's
CDK app synthesized (runtime/local/synth.py, cached) and its templates applied to the local
endpoint (runtime/local/deploy/): the same stacks, names and settings, not a second
description of them. Idempotent: a second `dp local up` applies only what changed.

`clients(service)` is a boto3 client factory for the local endpoint (or moto in-process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dataplatform.naming import Names
from dataplatform.runtime.local.deploy import Report, deploy
from dataplatform.runtime.local.deploy.engine import read_records
from dataplatform.runtime.local.deploy.resources import create_event_source_mapping
from dataplatform.spec import Environment, Platform

Clients = Callable[[str], Any]


def provision(
    platform: Platform,
    settings: Environment,
    names: Names,
    clients: Clients,
    *,
    progress: Callable[[str], None] | None = None,
    only: Iterable[str] | None = None,
) -> Report:
    """Synthesize (unless cached) and apply; the report lists what was applied, what was
    made now, and what the local platform does not apply, with the reason. `only`: those
    stacks (CDK ids: "Serving") and what they depend on."""
    from dataplatform.runtime.local import synth

    assembly = synth.synthesize(platform, settings.name, names.account)
    return deploy(
        assembly,
        clients,
        region=settings.region,
        account=names.account,
        progress=progress,
        only=only,
    )


def bootstrap_bucket(names: Names) -> str:
    """The assets bucket `cdk bootstrap` makes (CDK's default qualifier), where the local
    deployment publishes the assets and keeps its records."""
    return f"cdk-hnb659fds-assets-{names.account}-{names.region}"


def deferred(clients: Clients, names: Names, stack: str) -> dict[str, dict]:
    """The resources of `stack` whose making the local platform deferred: logical id ->
    {"Type", "Properties"} (resolved)."""
    records = read_records(clients("s3"), bootstrap_bucket(names), names.stack(stack))
    return records.get("deferred", {})


def scorer_mapping(clients: Clients, names: Names, model) -> dict:
    """The scorer's event source mapping, made from the serving stack's definition of it
    (deferred until the model is in service); the existing one when it exists."""
    function = names.scorer_function(model.name)
    for _lid, resource in deferred(clients, names, "serving").items():
        props = resource["Properties"]
        if resource["Type"] == "AWS::Lambda::EventSourceMapping" and props.get("FunctionName") in (
            function,
            f"arn:aws:lambda:{names.region}:{names.account}:function:{function}",
        ):
            return create_event_source_mapping(clients, props)
    raise LookupError(
        f"the serving stack ({names.stack('serving')}) defines no event source mapping for "
        f"{function}: run `dp local up` to deploy it"
    )
