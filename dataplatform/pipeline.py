"""The ML pipeline's sequence, declared once: the state machine (stacks/constructs/
ml_pipeline.py) is built from it and `dp pipeline run` executes it step by step locally,
so the two run the same things in the same order.

  1. curate every dataset (Glue jobs, in parallel)
  2. on one transient EMR cluster: build every feature table the models use (EMR steps,
     in order), then terminate the cluster (also on failure)
  3. per model, in parallel: train (SageMaker) -> quality gate -> register the model
     package (PendingManualApproval), or stop with the gate's failure
  4. notify (SNS), success or failure
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from dataplatform.spec import Platform

CLUSTER_PHASE = "features"


@dataclass(frozen=True)
class PipelinePlan:
    curate: tuple[str, ...]  # datasets
    features: tuple[str, ...]  # feature tables, in build order
    models: tuple[str, ...]


def pipeline_plan(platform: Platform) -> PipelinePlan:
    """Every dataset is curated; only feature tables some model trains on are built (in
    spec order); every model is trained."""
    used = {m.features_table for m in platform.models}
    return PipelinePlan(
        curate=tuple(d.name for d in platform.datasets),
        features=tuple(f.name for f in platform.features if f.name in used),
        models=tuple(m.name for m in platform.models),
    )


# The execution's input: `{"as_of_<table>": "YYYY-MM-DD"}` for the feature tables whose
# cutoff is given (flat keys, so that the state machine's defaults merge key by key); a
# table not named is built with its SQL's own default cutoff.
AS_OF_KEY = "as_of_{table}"
DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def as_of_key(table: str) -> str:
    return AS_OF_KEY.format(table=table)


def execution_input(plan: PipelinePlan, as_of: Mapping[str, str] | None) -> dict[str, str]:
    """The state machine's input for these cutoffs. Raises ValueError naming a table the
    pipeline does not build or a value that is not a date, and what is allowed."""
    given = dict(as_of or {})
    unknown = sorted(set(given) - set(plan.features))
    if unknown:
        raise ValueError(
            f"--as-of {unknown[0]}=...: the pipeline builds no feature table {unknown[0]!r} "
            f"(it builds {', '.join(plan.features) or 'none'})"
        )
    for table, day in given.items():
        if not DATE_PATTERN.match(day):
            raise ValueError(f"--as-of {table}={day}: not a date like 2026-11-20")
        try:
            date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"--as-of {table}={day}: no such day") from None
    return {as_of_key(table): day for table, day in given.items()}


def default_input(plan: PipelinePlan) -> dict[str, str]:
    """What the state machine uses for a cutoff its input does not give: "" (the features
    step then takes the SQL's default)."""
    return {as_of_key(table): "" for table in plan.features}
