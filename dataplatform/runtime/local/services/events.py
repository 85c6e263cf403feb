"""EventBridge rules with Lambda and SNS targets, which moto's rules cannot reach (its
PutEvents raises NotImplementedError for them, failing the whole call): the serving
stack's HighChurnRisk rule notifies the alerts topic, and its approval rule invokes the
endpoint deployer.

moto keeps the buses, rules and targets and matches events to rules itself; `install`
extends its rules' delivery: a Lambda target is invoked asynchronously by the Lambda
service (as EventBridge invokes functions), an SNS target gets the event published to its
topic, and every other target is moto's as before. The journal replays PutEvents at start:
the SNS publish happens again inside moto (its state stays the same), the Lambda
invocation does not (it was done the first time).

`emit(region, source, detail_type, detail)` puts an event on the default bus for the
services that stand in for AWS's own events (SageMaker's Model Package State Change).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from dataplatform.runtime.local import durable
from dataplatform.runtime.local.services.base import ACCOUNT

_installed: dict[str, Any] = {}


def install(lambdas) -> None:
    """Teach moto's rules Lambda and SNS targets; `lambdas` is the Lambda service."""
    from moto.events.models import Rule
    from moto.utilities.arns import parse_arn

    _installed["lambdas"] = lambdas
    if "original" in _installed:
        return
    original = _installed["original"] = Rule.send_to_targets

    def send_to_targets(rule, original_event: Any, transform_input: bool = True) -> None:
        if not rule.event_pattern.matches_event(original_event):
            return
        for target in rule.targets:
            arn = parse_arn(target["Arn"])
            if arn.service not in ("lambda", "sns"):
                single = copy.copy(rule)
                single.targets = [target]
                original(single, original_event, transform_input)
                continue
            transformer: dict = target.get("InputTransformer", {}) if transform_input else {}
            event = _transformed(transformer, original_event)
            if arn.service == "sns":
                _publish(target["Arn"], arn.region, event)
            elif not durable.restoring():
                _installed["lambdas"].invoke_event(target["Arn"], event, arn.region)

    # moto's method replaced in place (a patch is an assignment to a method)
    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign,assignment]


def _path(event: Any, path: str) -> Any:
    """A `$.a.b` path of the event (the paths EventBridge's InputPathsMap takes)."""
    value = event
    for part in path.removeprefix("$").strip(".").split("."):
        if not part:
            continue
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _transformed(transformer: dict, event: Any) -> Any:
    """The target's input, as EventBridge renders an InputTransformer: each `<name>` of the
    template replaced by its path's value (JSON, or the text itself for a string); a
    template that is a JSON string gives that text (CDK's RuleTargetInput.fromText)."""
    template = transformer.get("InputTemplate")
    if not template:
        return event
    rendered = template
    for name, path in (transformer.get("InputPathsMap") or {}).items():
        value = _path(event, path)
        text = value if isinstance(value, str) else json.dumps(value)
        rendered = rendered.replace(f"<{name}>", text)
    if template.startswith('"') and template.endswith('"'):
        return rendered[1:-1]
    try:
        return json.loads(rendered)
    except ValueError:
        return rendered


def _publish(topic_arn: str, region: str, event: Any) -> None:
    from moto.sns.models import sns_backends

    message = event if isinstance(event, str) else json.dumps(event)
    sns_backends[ACCOUNT][region].get_topic(topic_arn).publish(message)


def emit(server, region: str, source: str, detail_type: str, detail: dict, resources=()) -> None:
    """An AWS service's event on the account's default bus, as EventBridge gets it."""
    server.client("events", region).put_events(
        Entries=[
            {
                "Source": source,
                "DetailType": detail_type,
                "Detail": json.dumps(detail, default=str),
                "Resources": list(resources),
            }
        ]
    )
