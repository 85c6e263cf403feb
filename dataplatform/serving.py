"""A served model's endpoint deployer, as configured: the one description of the
environment the deployer Lambda (lambdas/endpoint_deployer) reads its EndpointTarget from.
The serving stack writes it into the function's environment with its deployed values
(tokens for the role, subnets, security group, bucket and key), and the local platform
builds the same from what is provisioned locally, then calls the deployer's own `deploy`
with it, so both roll an endpoint with the same requests."""

from __future__ import annotations

import json

from dataplatform import layout
from dataplatform.naming import Names
from dataplatform.spec import Model

DATA_CAPTURE_PERCENT = 100


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
