"""A trained model's entry in the model registry: the one CreateModelPackage request that
`dp train` (runtime/aws/training.py, on AWS and on the local platform's SageMaker)
sends, and that the state machine's Register<Model> task takes as its parameters
(stacks/constructs/ml_pipeline.py).

The request is the same for both, but for its run-time values: the training job's name,
its model artifact and the gate's test metrics. The local registration passes them as they
are; the state machine knows them only when it runs, so it passes `StateValue`s (JSONPath
references into its state), and a field given one is written `Name.$`, as Step Functions
takes parameters resolved at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

APPROVAL_STATUS = "PendingManualApproval"
CONTENT_TYPES = ("application/json", "text/csv")  # what training/inference.py reads and writes
INFERENCE_PROGRAM = "inference.py"  # training/inference.py, in the training sourcedir


@dataclass(frozen=True)
class StateValue:
    """A value the state machine resolves when it runs: a JSONPath into its state
    (`$.training.TrainingJobName`) or an intrinsic function (`States.Format(...)`)."""

    expression: str


Value = str | StateValue


def model_package_request(
    *,
    package_group: str,
    model_name: str,
    training_job: Value,
    model_data_url: Value,
    image_uri: str,
    test_metrics: Value,
    inference_source: str,
) -> dict[str, Any]:
    """CreateModelPackage's fields for the model `model_name` trained by `training_job`,
    whose artifact is `model_data_url` (model.tar.gz); PendingManualApproval. `test_metrics`
    is the gate's registry form of the test metrics (gate.registry_metrics): not JSON, as
    SageMaker allows only letters, digits, spaces and _.:/=+-@ in metadata values.
    `inference_source` is training/'s sourcedir.tar.gz: the scikit-learn container serves
    the package with its inference.py (SAGEMAKER_PROGRAM), as the local platform's SageMaker does."""
    return {
        "ModelPackageGroupName": package_group,
        **_field(
            "ModelPackageDescription", _format("{} from training job {}", model_name, training_job)
        ),
        "ModelApprovalStatus": APPROVAL_STATUS,
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": image_uri,
                    **_field("ModelDataUrl", model_data_url),
                    "Environment": {
                        "SAGEMAKER_PROGRAM": INFERENCE_PROGRAM,
                        "SAGEMAKER_SUBMIT_DIRECTORY": inference_source,
                    },
                }
            ],
            "SupportedContentTypes": list(CONTENT_TYPES),
            "SupportedResponseMIMETypes": list(CONTENT_TYPES),
        },
        "CustomerMetadataProperties": {
            **_field("training_job", training_job),
            **_field("test_metrics", test_metrics),
        },
    }


def _field(name: str, value: Value) -> dict[str, str]:
    if isinstance(value, StateValue):
        return {f"{name}.$": value.expression}
    return {name: value}


def _format(template: str, *values: Value) -> Value:
    """`template` with its `{}` filled by `values`; with a StateValue among them, the
    States.Format that fills it when the state machine runs."""
    if not any(isinstance(v, StateValue) for v in values):
        return template.format(*values)
    args = [v.expression if isinstance(v, StateValue) else _string_literal(v) for v in values]
    return StateValue(
        f"States.Format({_string_literal(template, braces=False)}, {', '.join(args)})"
    )


def _string_literal(text: str, *, braces: bool = True) -> str:
    """`text` as a string argument of an intrinsic function: quoted, with the characters
    intrinsic functions reserve escaped (the braces too, but in a format template)."""
    reserved = "\\'{}" if braces else "\\'"
    return "'" + "".join(f"\\{c}" if c in reserved else c for c in text) + "'"
