"""Double opt-in for destroying data (DSF's `Context.revertRemovalPolicy` pattern).

Data resources are DESTROYed on `cdk destroy` only when the environment's settings
allow it AND the deployer asks for it with `-c destroy_data=true`. Everything else
RETAINs, with a warning annotation saying why, so nobody is surprised either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Annotations, RemovalPolicy
from constructs import Construct

from dataplatform.spec import Environment

DESTROY_CONTEXT_KEY = "destroy_data"


@dataclass(frozen=True)
class DataRemoval:
    policy: RemovalPolicy
    warning: str | None

    @property
    def destroys(self) -> bool:
        return self.policy == RemovalPolicy.DESTROY

    @classmethod
    def decide(cls, env: Environment, destroy_requested: bool) -> DataRemoval:
        if env.allow_destroy and destroy_requested:
            return cls(RemovalPolicy.DESTROY, None)
        if destroy_requested:
            return cls(
                RemovalPolicy.RETAIN,
                f"-c {DESTROY_CONTEXT_KEY}=true ignored: environment {env.name!r} does not "
                "allow destroying data (allow_destroy: false); data resources are RETAINed",
            )
        if env.allow_destroy:
            return cls(
                RemovalPolicy.RETAIN,
                f"Data resources are RETAINed on `cdk destroy`; environment {env.name!r} "
                f"allows destroying them: pass -c {DESTROY_CONTEXT_KEY}=true to do so",
            )
        return cls(RemovalPolicy.RETAIN, None)

    def annotate(self, scope: Construct) -> None:
        if self.warning:
            Annotations.of(scope).add_warning_v2("dataplatform:dataRetained", self.warning)


def context_flag(value: object) -> bool:
    """CDK context values arrive as strings from the CLI (`-c x=true`) or as booleans."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError(f"-c {DESTROY_CONTEXT_KEY}={value!r}: use true or false")
