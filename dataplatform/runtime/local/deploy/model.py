"""What the local deployer's engine and its appliers share: the resource about to be
applied, what an applier returns, what was applied or not, and the deployment's report.
`Context` is what an applier may use of the deployment (engine.Deployment implements it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class Unresolved(Exception):
    """A reference to a resource that is not applied (or a value not known locally)."""

    def __init__(self, logical_id: str, why: str):
        super().__init__(f"{logical_id}: {why}")
        self.logical_id, self.why = logical_id, why


class DeployError(RuntimeError):
    """A resource the local platform applies failed to apply (CloudFormation's
    CREATE_FAILED): the stack, the resource and the service's own error."""


@dataclass
class Applied:
    stack: str
    logical_id: str
    type: str
    physical_id: str
    attributes: dict[str, Any]
    digest: str = ""
    created: bool = False  # made by this deployment, not found from an earlier one
    notes: list[str] = field(default_factory=list)  # what of it was applied only in part


@dataclass(frozen=True)
class Unapplied:
    stack: str
    logical_id: str
    type: str
    reason: str


@dataclass
class Report:
    applied: list[Applied] = field(default_factory=list)
    unapplied: list[Unapplied] = field(default_factory=list)
    # stack -> logical id -> {"Type", "Properties" (resolved)}
    deferred: dict[str, dict[str, dict]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was applied only in part, and why

    @property
    def created(self) -> list[Applied]:
        return [a for a in self.applied if a.created]

    def find(self, type_: str) -> list[Applied]:
        return [a for a in self.applied if a.type == type_]


@dataclass
class Pending:
    """A resource about to be applied: its resolved properties and what an earlier
    deployment recorded for it (None the first time)."""

    stack: str
    logical_id: str
    type: str
    props: dict[str, Any]
    previous: Applied | None
    tags: dict[str, str]  # the stack's tags (CloudFormation puts them on what it makes)


@dataclass(frozen=True)
class Out:
    """What an applier made: the resource's physical id (its Ref) and attributes."""

    physical_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


class Context(Protocol):
    """What an applier uses of the deployment."""

    region: str
    account: str
    report: Report

    def clients(self, service: str) -> Any: ...

    def publish(self, bucket: str, key: str) -> None: ...

    def zone(self, name: str) -> str: ...
