"""Amazon States Language, enough of it to follow a definition the way Step Functions does:
JSONPath references, the intrinsic functions, Parameters / ResultSelector / ResultPath,
Choice rules, Parallel branches and Catch. `simulate` walks one path through a definition,
asks `answer(resource, parameters)` for each Task's result (the caller gives realistic API
answers) and records every Task's resource and evaluated Parameters, so tests can check
them against the API models and the role's permissions.

A path that does not exist where a state reads it, or an intrinsic function that fails,
raises AslError, as Step Functions fails the execution with States.Runtime."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class AslError(Exception):
    pass


# ----------------------------------------------------------------------------- paths

_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\['([^']+)'\]|\[(\d+)\]")


def read_path(path: str, document: Any, context: dict) -> Any:
    if path.startswith("$$"):
        document, rest = context, path[2:]
    elif path.startswith("$"):
        rest = path[1:]
    else:
        raise AslError(f"{path!r} is not a JSONPath")
    value, at = document, 0
    while at < len(rest):
        match = _STEP.match(rest, at)
        if not match:
            raise AslError(f"cannot read JSONPath {path!r} (at {rest[at:]!r})")
        name, quoted, index = match.groups()
        try:
            value = value[int(index)] if index is not None else value[name or quoted]
        except (KeyError, IndexError, TypeError):
            raise AslError(f"JSONPath {path!r} does not exist in the state's input") from None
        at = match.end()
    return value


def write_path(document: Any, path: str | None, result: Any) -> Any:
    """ResultPath: None discards the result, "$" replaces the input."""
    if path is None:
        return document
    if path == "$":
        return result
    steps = [m.group(1) or m.group(2) for m in _STEP.finditer(path[1:])]
    document = copy.deepcopy(document) if isinstance(document, dict) else {}
    target = document
    for step in steps[:-1]:
        target = target.setdefault(step, {})
    target[steps[-1]] = result
    return document


# ----------------------------------------------------------------------------- intrinsics

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:\\.|[^'\\])*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<bool>true|false)"
    r"|(?P<path>\$\$?[^,()\s]*)"
    r"|(?P<fn>States\.[A-Za-z]+)\(|(?P<close>\))|(?P<comma>,))"
)


def evaluate_intrinsic(text: str, document: Any, context: dict) -> Any:
    tokens = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if not match:
            raise AslError(f"cannot parse intrinsic {text!r} at {text[at:]!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        at = match.end()
        while at < len(text) and text[at].isspace():
            at += 1
    value, rest = _call(tokens, document, context)
    if rest:
        raise AslError(f"trailing text in intrinsic {text!r}")
    return value


def _call(tokens, document, context):
    kind, name = tokens[0]
    if kind != "fn":
        raise AslError(f"expected an intrinsic function, got {name!r}")
    args, tokens = [], tokens[1:]
    while tokens and tokens[0][0] != "close":
        kind, text = tokens[0]
        if kind == "fn":
            value, tokens = _call(tokens, document, context)
        elif kind == "str":
            value, tokens = re.sub(r"\\(.)", r"\1", text[1:-1]), tokens[1:]
        elif kind == "num":
            value, tokens = (float(text) if "." in text else int(text)), tokens[1:]
        elif kind == "bool":
            value, tokens = text == "true", tokens[1:]
        elif kind == "path":
            value, tokens = read_path(text, document, context), tokens[1:]
        else:
            raise AslError(f"unexpected {text!r} in {name}")
        args.append(value)
        if tokens and tokens[0][0] == "comma":
            tokens = tokens[1:]
    if not tokens:
        raise AslError(f"{name}: missing )")
    return _apply(name, args), tokens[1:]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _apply(name: str, args: list) -> Any:
    if name == "States.Format":
        template, values = args[0], list(args[1:])
        if template.count("{}") != len(values):
            raise AslError(
                f"States.Format: {template.count('{}')} placeholders, {len(values)} values"
            )
        parts = template.split("{}")
        out = parts[0]
        for value, part in zip(values, parts[1:], strict=True):
            if isinstance(value, (dict, list)):
                raise AslError("States.Format takes strings, numbers, booleans and null only")
            out += (_json(value) if not isinstance(value, str) else value) + part
        return out
    if name == "States.JsonToString":
        return _json(args[0])
    if name == "States.StringToJson":
        return json.loads(args[0])
    if name == "States.Array":
        return list(args)
    if name == "States.ArrayGetItem":
        return args[0][args[1]]
    if name == "States.ArrayLength":
        return len(args[0])
    if name == "States.StringSplit":
        return [p for p in re.split("[" + re.escape(args[1]) + "]", args[0]) if p]
    if name == "States.UUID":
        return str(uuid.UUID(int=0x1234567890ABCDEF1234567890ABCDEF))
    if name == "States.JsonMerge":
        first, second, deep = args
        if deep:
            raise AslError("States.JsonMerge: Step Functions supports shallow merges only")
        if not (isinstance(first, dict) and isinstance(second, dict)):
            raise AslError("States.JsonMerge merges two JSON objects")
        return {**first, **second}
    if name == "States.MathAdd":
        return args[0] + args[1]
    raise AslError(f"intrinsic {name} is not known here")


def evaluate(template: Any, document: Any, context: dict) -> Any:
    """A Parameters/ResultSelector template: `key.$` fields read a path or call intrinsics."""
    if isinstance(template, list):
        return [evaluate(v, document, context) for v in template]
    if not isinstance(template, dict):
        return template
    out = {}
    for key, value in template.items():
        if key.endswith(".$"):
            out[key[:-2]] = (
                evaluate_intrinsic(value, document, context)
                if value.startswith("States.")
                else read_path(value, document, context)
            )
        else:
            out[key] = evaluate(value, document, context)
    return out


# ----------------------------------------------------------------------------- choice rules


def _rule(rule: dict, document: Any, context: dict) -> bool:
    if "And" in rule:
        return all(_rule(r, document, context) for r in rule["And"])
    if "Or" in rule:
        return any(_rule(r, document, context) for r in rule["Or"])
    if "Not" in rule:
        return not _rule(rule["Not"], document, context)
    variable = rule["Variable"]
    if "IsPresent" in rule:
        try:
            read_path(variable, document, context)
            present = True
        except AslError:
            present = False
        return present == rule["IsPresent"]
    value = read_path(variable, document, context)
    for op, expected in rule.items():
        if op in ("Variable", "Next"):
            continue
        if op.endswith("Path"):
            op, expected = op[:-4], read_path(expected, document, context)
        if op in ("BooleanEquals", "StringEquals", "NumericEquals"):
            return value == expected
        if op == "NumericGreaterThanEquals":
            return value >= expected
        if op == "NumericLessThan":
            return value < expected
        if op == "IsNull":
            return (value is None) == expected
        raise AslError(f"Choice operator {op} is not known here")
    raise AslError(f"Choice rule without an operator: {rule}")


# ----------------------------------------------------------------------------- running


@dataclass
class TaskCall:
    state: str
    resource: str
    parameters: dict


class Failure(Exception):
    def __init__(self, error: str, cause: str, state: str = ""):
        super().__init__(f"{error}: {cause}")
        self.error, self.cause, self.state = error, cause, state


def simulate(
    definition: dict,
    document: Any,
    answer: Callable[[str, str, dict], Any],
    *,
    context: dict,
    fail_at: str | None = None,
) -> tuple[str, list[TaskCall], Any]:
    """Run the definition; the Task named `fail_at` fails with States.TaskFailed (to follow
    its Catch). Returns the Succeed or Fail state it ended in, the Task calls in order,
    and the final output (for a Fail state: its cause)."""
    calls: list[TaskCall] = []
    ended: list[str] = []
    try:
        output = _run(definition, document, answer, context, fail_at, calls, ended)
        return ended[-1], calls, output
    except Failure as failure:
        return failure.state or failure.error, calls, failure.cause


def _run(machine, document, answer, context, fail_at, calls, ended):
    name = machine["StartAt"]
    while True:
        state = machine["States"][name]
        kind = state["Type"]
        try:
            if kind == "Task":
                parameters = evaluate(state.get("Parameters", {}), document, context)
                calls.append(TaskCall(name, state["Resource"], parameters))
                if name == fail_at:
                    raise Failure("States.TaskFailed", f"{name} failed (simulated)")
                result = answer(name, state["Resource"], parameters)
                document = _apply_result(state, document, result, context)
            elif kind == "Parallel":
                results = [
                    _run(branch, copy.deepcopy(document), answer, context, fail_at, calls, [])
                    for branch in state["Branches"]
                ]
                document = _apply_result(state, document, results, context)
            elif kind == "Pass":
                result = (
                    evaluate(state["Parameters"], document, context)
                    if "Parameters" in state
                    else state.get("Result", document)
                )
                document = write_path(document, state.get("ResultPath", "$"), result)
                if "OutputPath" in state:
                    document = read_path(state["OutputPath"], document, context)
            elif kind == "Choice":
                name = next(
                    (r["Next"] for r in state.get("Choices", []) if _rule(r, document, context)),
                    state.get("Default"),
                )
                if name is None:
                    raise Failure("States.NoChoiceMatched", str(state))
                continue
            elif kind == "Succeed":
                ended.append(name)
                return document
            elif kind == "Fail":
                cause = state.get("Cause")
                if "CausePath" in state:
                    path = state["CausePath"]
                    cause = (
                        evaluate_intrinsic(path, document, context)
                        if path.startswith("States.")
                        else read_path(path, document, context)
                    )
                raise Failure(state.get("Error", "States.Fail"), cause or "", name)
        except Failure as failure:
            catch = next(
                (
                    c
                    for c in state.get("Catch", [])
                    if "States.ALL" in c["ErrorEquals"] or failure.error in c["ErrorEquals"]
                ),
                None,
            )
            if catch is None or kind not in ("Task", "Parallel"):
                raise
            document = write_path(
                document,
                catch.get("ResultPath", "$"),
                {"Error": failure.error, "Cause": failure.cause},
            )
            name = catch["Next"]
            continue
        if state.get("End"):
            ended.append(name)
            return document
        name = state["Next"]


def _apply_result(state: dict, document: Any, result: Any, context: dict) -> Any:
    if "ResultSelector" in state:
        result = evaluate(state["ResultSelector"], result, context)
    return write_path(document, state.get("ResultPath", "$"), result)
