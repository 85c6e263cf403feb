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

from dataclasses import dataclass

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
