"""A request checked against the botocore model of the API it calls, constraints included.

botocore validates names, types and required members before it sends a request, but not the
model's `pattern`, `min`/`max` (lengths of strings, lists and maps; values of numbers) and
`enum` traits, which the service enforces and refuses with a ValidationException. `problems`
checks both. Patterns are Java regular expressions that the service matches against the
whole value; the `regex` module reads their \\p{...} classes.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
import regex
from botocore.model import Shape
from botocore.validate import ParamValidator


@functools.cache
def _service(service: str):
    return botocore.session.get_session().get_service_model(service)


def input_shape(service: str, operation: str) -> Shape:
    return _service(service).operation_model(operation).input_shape


@functools.cache
def _pattern(pattern: str):
    # Some models quantify the end anchor (`...)${1,256}`): a no-op for Java, an error here.
    cleaned = regex.sub(r"\$\{\d+(,\d*)?\}", "$", pattern)
    try:
        return regex.compile(cleaned)
    except regex.error:
        return None


def problems(service: str, operation: str, params: dict) -> list[str]:
    """Every way `params` breaks the model of service.operation; [] when AWS would take it."""
    shape = input_shape(service, operation)
    report = ParamValidator().validate(params, shape)
    found = (
        [line.strip() for line in report.generate_report().splitlines() if line.strip()]
        if report.has_errors()
        else []
    )
    return found + constraint_problems(params, shape, operation)


def constraint_problems(params: Any, shape: Shape, where: str) -> list[str]:
    """Only what botocore's own validation leaves out: patterns, lengths, ranges, enums."""
    found: list[str] = []
    _constraints(params, shape, where, found)
    return found


def enforce_in_every_client() -> None:
    """From now on every botocore client of this process refuses, before sending, a request
    that breaks its model's constraints (ParamValidationError, as for a wrong type)."""
    from botocore.exceptions import ParamValidationError
    from botocore.validate import ParamValidationDecorator

    if getattr(ParamValidationDecorator, "_constraints_enforced", False):
        return
    original = ParamValidationDecorator.serialize_to_request

    def serialize_to_request(self, parameters, operation_model):
        if operation_model.input_shape is not None:
            found = constraint_problems(
                parameters,
                operation_model.input_shape,
                f"{operation_model.service_model.service_name}.{operation_model.name}",
            )
            if found:
                raise ParamValidationError(report="\n".join(found))
        return original(self, parameters, operation_model)

    ParamValidationDecorator.serialize_to_request = serialize_to_request
    ParamValidationDecorator._constraints_enforced = True


def _length_problem(value: Any, shape: Shape, where: str) -> str | None:
    size = len(value)
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        return f"{where}: length {size} < min {low}"
    if high is not None and size > high:
        return f"{where}: length {size} > max {high}"
    return None


def _constraints(value: Any, shape: Shape, where: str, found: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member_value in value.items():
            if name in shape.members:
                _constraints(member_value, shape.members[name], f"{where}.{name}", found)
    elif kind == "list" and isinstance(value, list):
        problem = _length_problem(value, shape, where)
        if problem:
            found.append(problem)
        for i, item in enumerate(value):
            _constraints(item, shape.member, f"{where}[{i}]", found)
    elif kind == "map" and isinstance(value, dict):
        problem = _length_problem(value, shape, where)
        if problem:
            found.append(problem)
        for key, item in value.items():
            _constraints(key, shape.key, f"{where} key {key!r}", found)
            _constraints(item, shape.value, f"{where}[{key!r}]", found)
    elif kind == "string" and isinstance(value, str):
        problem = _length_problem(value, shape, where)
        if problem:
            found.append(problem)
        enum = shape.metadata.get("enum")
        if enum and value not in enum:
            found.append(f"{where}: {value!r} is not one of {enum}")
        pattern = shape.metadata.get("pattern")
        compiled = _pattern(pattern) if pattern else None
        if compiled is not None and compiled.fullmatch(value) is None:
            found.append(f"{where}: {value!r} does not match {pattern!r}")
    elif kind in ("integer", "long", "float", "double") and isinstance(value, (int, float)):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            found.append(f"{where}: {value} < min {low}")
        if high is not None and value > high:
            found.append(f"{where}: {value} > max {high}")
