"""Both targets implement the one platform interface (dataplatform/runtime/interface.py):
every operation, with the interface's parameters (an implementation may add optional ones)."""

from __future__ import annotations

import inspect

import pytest

from dataplatform.runtime import interface
from dataplatform.runtime.aws.platform import AwsPlatform
from dataplatform.runtime.local.platform import LocalPlatform

OPERATIONS = sorted(
    name
    for name, member in vars(interface.Platform).items()
    if callable(member) and not name.startswith("_")
)


def test_the_interface_has_the_operations_the_cli_uses():
    assert {"ingest", "crawl", "curate", "emr_run", "emr_status", "query", "train"} <= set(
        OPERATIONS
    )
    assert "run_pipeline" in OPERATIONS and "features" in OPERATIONS


@pytest.mark.parametrize("target", [LocalPlatform, AwsPlatform], ids=["local", "aws"])
def test_each_target_implements_every_operation(target):
    assert issubclass(target, interface.Platform)
    assert target.__abstractmethods__ == frozenset()
    assert isinstance(target.cheap_queries, bool)
    for name in OPERATIONS:
        declared = inspect.signature(getattr(interface.Platform, name)).parameters
        implemented = inspect.signature(getattr(target, name)).parameters
        for parameter in declared.values():
            assert parameter.name in implemented, f"{target.__name__}.{name}: {parameter.name}"
            assert implemented[parameter.name].kind == parameter.kind, f"{name}.{parameter.name}"
        extra = [p for n, p in implemented.items() if n not in declared]
        assert all(p.default is not inspect.Parameter.empty for p in extra), (
            f"{target.__name__}.{name} requires {[p.name for p in extra]} the interface lacks"
        )
