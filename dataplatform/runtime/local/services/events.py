"""EventBridge rules with Lambda, SNS and Step Functions targets, which moto's rules cannot
reach (its PutEvents raises NotImplementedError for them, failing the whole call): the
serving stack's HighChurnRisk rule notifies the alerts topic, its approval rule invokes
the endpoint deployer, and the orchestration stack's rule starts the ML pipeline when a
model's monitoring alarm goes to ALARM.

moto keeps the buses, rules and targets and matches events to rules itself; `install`
extends its rules' delivery: a Lambda target is invoked asynchronously by the Lambda
service (as EventBridge invokes functions), an SNS target gets the event published to its
topic, a state machine gets an execution (StartExecution on moto's Step Functions, which
services/states.py runs), and every other target is moto's as before. What these targets
get is what EventBridge sends: the target's Input, the part of the event its InputPath
names, its InputTransformer's rendering, or the whole event. The journal replays
PutEvents at start: the SNS publish happens again inside moto (its state stays the same),
the Lambda invocation does not (it was done the first time), and the execution is started
again under the same name, which states.py restores from its record instead of running.

`emit(region, source, detail_type, detail)` puts an event on the default bus for the
services that stand in for AWS's own events (SageMaker's Model Package State Change,
CloudWatch's Alarm State Change).
"""

from __future__ import annotations

import copy
import json
import sys
import uuid
from typing import Any

from dataplatform.runtime.local import durable
from dataplatform.runtime.local.services.base import ACCOUNT

_installed: dict[str, Any] = {}


def install(lambdas) -> None:
    """Teach moto's rules Lambda, SNS and Step Functions targets; `lambdas` is the Lambda
    service."""
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
            if arn.service not in ("lambda", "sns", "states"):
                single = copy.copy(rule)
                single.targets = [target]
                original(single, original_event, transform_input)
                continue
            event = _target_input(target, original_event) if transform_input else original_event
            if arn.service == "sns":
                _publish(target["Arn"], arn.region, event)
            elif arn.service == "states":
                _start_execution(rule, target, arn, original_event, event)
            elif not durable.restoring():
                _installed["lambdas"].invoke_event(target["Arn"], event, arn.region)

    # moto's method replaced in place (a patch is an assignment to a method)
    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign,assignment]


def _target_input(target: dict, event: Any) -> Any:
    """What EventBridge sends a target: its Input (constant JSON text), the part of the
    event its InputPath names, its InputTransformer's rendering, or else the whole event."""
    if target.get("Input") is not None:
        try:
            return json.loads(target["Input"])
        except ValueError:
            return target["Input"]
    if target.get("InputPath"):
        return _path(event, target["InputPath"])
    if target.get("InputTransformer"):
        return _transformed(target["InputTransformer"], event)
    return event


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
    template replaced by its path's value. In a JSON template a value stands as JSON where
    the placeholder stands alone (a string quoted: CDK's `EventField.fromPath` in
    `RuleTargetInput.fromObject`) and as its text inside a string; a template that is a
    JSON string gives that text (CDK's RuleTargetInput.fromText); a template that is not
    JSON gives the text with the values' text in it."""
    template = transformer.get("InputTemplate")
    if not template:
        return event
    values = {
        "aws.events.event.json": event,
        **{
            name: _path(event, path)
            for name, path in (transformer.get("InputPathsMap") or {}).items()
        },
    }
    try:
        return json.loads(_render(template, values, as_json=True))
    except ValueError:
        return _render(template, values, as_json=False)


def _render(template: str, values: dict[str, Any], *, as_json: bool) -> str:
    """The template with each `<name>` of `values` replaced: as text, or (`as_json`) as JSON
    outside a JSON string and as escaped text inside one."""
    out: list[str] = []
    in_string = escaped = False
    at = 0
    while at < len(template):
        char = template[at]
        name = next((n for n in values if char == "<" and template.startswith(f"<{n}>", at)), None)
        if name is not None:
            value = values[name]
            text = value if isinstance(value, str) else json.dumps(value)
            if not as_json:
                out.append(text)
            elif in_string:
                out.append(json.dumps(text)[1:-1])
            else:
                out.append(json.dumps(value))
            at += len(name) + 2
            continue
        if in_string and char == "\\" and not escaped:
            escaped = True
        else:
            if char == '"' and not escaped:
                in_string = not in_string
            escaped = False
        out.append(char)
        at += 1
    return "".join(out)


def _start_execution(rule, target: dict, arn, original_event: Any, event: Any) -> None:
    """An execution of the target's state machine with the event's input, as EventBridge
    starts one (the target's RoleArn is not checked: moto keeps no IAM). Its name is the
    UUID EventBridge would generate, derived here from the event's id, the rule and the
    target: the journal's replay of PutEvents (the same event id) starts it under the same
    name, and services/states.py then restores the ended execution instead of running it
    again. A failure (a state machine gone) drops the event, as EventBridge's delivery
    does, without failing PutEvents."""
    from moto.stepfunctions.responses import get_backend

    name = uuid.uuid5(uuid.NAMESPACE_URL, f"{rule.arn}/{target['Id']}/{original_event['id']}")
    try:
        get_backend(arn.account, arn.region).start_execution(
            target["Arn"], name=str(name), execution_input=json.dumps(event)
        )
    except Exception as exc:  # noqa: BLE001 - EventBridge drops an undeliverable event
        print(f"rule {rule.name}: StartExecution of {target['Arn']} failed: {exc}", file=sys.stderr)


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
