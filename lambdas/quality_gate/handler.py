"""Quality-gate Lambda: a thin adapter over `gate.run_gate`.

Event: {"model": "churn", "metrics_uri": "s3://bucket/.../metrics.json"
        (or "model_artifacts_uri": "s3://bucket/.../output/model.tar.gz"),
        "quality_gate": {"auc": 0.75}}
Returns {"model", "passed", "checks": [{"metric", "value", "threshold", "direction",
"passed"}], "metrics"}; raises gate.GateError (errorType "GateError" for a Step Functions
Catch) when it cannot decide.
"""

from __future__ import annotations

import json

from gate import GateError, run_gate, summary  # noqa: F401 - GateError is part of the API


def handler(event: dict, context: object, s3=None) -> dict:
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    result = run_gate(event, s3)
    print(json.dumps({"quality_gate": summary(result), "passed": result["passed"]}))
    return result
