"""A served model's Lambdas, as configured: the one description of the environments the
endpoint deployer (lambdas/endpoint_deployer, its EndpointTarget) and the stream scorer
(lambdas/stream_scorer, its ScorerConfig) read. The serving stack writes them into the
functions' environments with its deployed values (tokens for the role, subnets, security
group, bucket, key, tables and streams); for the deployer the local platform builds the same
from what is provisioned locally, then calls the deployer's own `deploy` with it, so both
roll an endpoint with the same requests."""

from __future__ import annotations

import json
import re

from dataplatform import layout
from dataplatform.naming import Names
from dataplatform.spec import Model

DATA_CAPTURE_PERCENT = 100


def deployed_version(endpoint_name: str, config_name: str) -> int | None:
    """The package version an endpoint configuration of the deployer was made for: it names
    them `<endpoint>-v<version>` (lambdas/endpoint_deployer's resource_name); None for
    another name (a configuration made by hand)."""
    match = re.fullmatch(re.escape(endpoint_name) + r"-v(\d+)", config_name)
    return int(match.group(1)) if match else None


def deployer_environment(
    model: Model,
    names: Names,
    *,
    role_arn: str,
    subnet_ids: list[str],
    security_group_id: str,
    models_bucket: str,
    key_arn: str,
) -> dict[str, str]:
    """The deployer Lambda's environment for `model` (one with a serving: section)."""
    serving = model.serving
    if serving is None:
        raise ValueError(f"model {model.name} declares no serving section")
    m = model.name
    return {
        "MODEL_NAME": m,
        "ENDPOINT_NAME": names.endpoint(m),
        "PACKAGE_GROUP": names.model_package_group(m),
        "ROLE_ARN": role_arn,
        "MODE": serving.mode,
        "MEMORY_MB": str(serving.memory_mb),
        "MAX_CONCURRENCY": str(serving.max_concurrency),
        "INSTANCE_TYPE": serving.instance_type,
        "INSTANCES": str(serving.instances),
        "SUBNET_IDS": ",".join(subnet_ids),
        "SECURITY_GROUP_IDS": security_group_id,
        "DATA_CAPTURE_URI": f"s3://{models_bucket}/{layout.data_capture_prefix(m)}",
        "DATA_CAPTURE_PERCENT": str(DATA_CAPTURE_PERCENT),
        "KMS_KEY_ARN": key_arn,
        "TAGS": json.dumps(
            {"project": names.project, "environment": names.env, "model": m}, sort_keys=True
        ),
    }


def scorer_environment(
    model: Model,
    names: Names,
    *,
    features_table: str,
    scores_table: str,
    event_bus: str,
    scores_stream: str | None,
) -> dict[str, str]:
    """The scorer Lambda's environment for `model` (one with a serving: section), which
    `dataplatform.online.scorer.ScorerConfig.from_environment` reads: the model, its
    problem (which score its endpoint answers), its own inputs in the order it was trained
    on, the threshold, action and event of its spec, where it keeps and sends things."""
    serving = model.serving
    if serving is None:
        raise ValueError(f"model {model.name} declares no serving section")
    if not model.feature_columns:
        raise ValueError(
            f"model {model.name} has no known inputs: its features table must name its "
            "output columns (no SELECT *)"
        )
    m = model.name
    return {
        "MODEL_NAME": m,
        "ENDPOINT_NAME": names.endpoint(m),
        "FEATURES_TABLE": features_table,
        "SCORES_TABLE": scores_table,
        "EVENT_BUS_NAME": event_bus,
        "PROBLEM": model.problem,
        "FEATURE_COLUMNS": ",".join(model.feature_columns),
        "THRESHOLD": str(serving.threshold),
        "ACTION": serving.action,
        "EVENT_TYPE": serving.event,
        "DATASET": serving.stream,
        "SCORES_STREAM": scores_stream or "",
    }
