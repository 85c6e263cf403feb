"""What a local SageMaker endpoint serves, and how it answers InvokeEndpoint.

A production variant's model is what SageMaker's framework container would load: the
model's container (its PrimaryContainer, its first of Containers, or the
InferenceSpecification container of the model package it names) gives the model data
(`ModelDataUrl`, a model.tar.gz, fetched and extracted) and the serving code (the
`SAGEMAKER_PROGRAM` of `SAGEMAKER_SUBMIT_DIRECTORY`, a sourcedir.tar.gz on S3, or of the
model's own `code/` folder). The serving code's functions run as the scikit-learn
container runs them: `model_fn` once when the variant loads, then `input_fn`,
`predict_fn` and `output_fn` per request. The container image itself is not run: the
code runs in the server's Python, whose packages stand for the image's.

Each endpoint's code is its own: the program is imported under a name of its own, and the
modules of its folder that it imports (a helper beside inference.py) are kept with it and
out of `sys.modules`, so two endpoints serving different code with the same file names do
not share a module. Third-party packages (scikit-learn, pandas) are shared, as one image's
are. A module the code imports only while answering a request is imported as any other.

The answers are SageMaker Runtime's (botocore's sagemaker-runtime model, rest-json): 200
with output_fn's body, `Content-Type` (what output_fn produced), the
`x-Amzn-Invoked-Production-Variant` and `x-amzn-RequestId` headers. Errors carry
`x-amzn-ErrorType: <Code>:<namespace>` and a JSON body, which botocore turns into a
ClientError with that code:
  400 ValidationError "Endpoint <name> of account <account> not found." (SageMaker's words)
  424 ModelError, when a serving function raised: Message, OriginalStatusCode (the
      function's `status_code`: training/inference.py's InferenceError says 400 for bad
      input, 415 for the ContentType, 406 for Accept; 500 anything else), OriginalMessage
      (the error's message) and LogStreamArn (the endpoint's log group).
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import re
import sys
import tarfile
import tempfile
import threading
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from dataplatform.runtime.local.services.dispatch import RawResponse

JSON = "application/json"
# SageMaker's x-amzn-ErrorType values: "<Code>:<namespace>"; botocore keeps the code
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.sagemaker/"
SERVING_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn")
# the model.tar.gz's own serving code, when the container names no submit directory
MODEL_CODE_FOLDER = "code"

_IMPORTS = threading.Lock()  # sys.path and sys.modules are the process's
_NUMBER = itertools.count(1)


class LoadFailed(Exception):
    """The variant cannot serve; the message is the endpoint's FailureReason."""


@dataclass(frozen=True)
class Container:
    """What a production variant's model runs: the image (not run here), its model data and
    its environment (SAGEMAKER_PROGRAM, SAGEMAKER_SUBMIT_DIRECTORY, ...)."""

    image: str
    model_data_url: str | None
    environment: dict[str, str]


def container_of(sagemaker, model_name: str) -> Container:
    """The container of a Model (moto's DescribeModel): its PrimaryContainer or first of
    Containers; one naming a ModelPackageName is the package's InferenceSpecification
    container (moto's DescribeModelPackage), its Environment overridden by the model's."""
    try:
        model = sagemaker.describe_model(ModelName=model_name)
    except sagemaker.exceptions.ClientError as exc:
        raise LoadFailed(f"model {model_name}: {exc.response['Error'].get('Message')}") from None
    container: dict = model.get("PrimaryContainer") or next(iter(model.get("Containers") or []), {})
    environment = dict(container.get("Environment") or {})
    package = container.get("ModelPackageName")
    if package:
        try:
            described = sagemaker.describe_model_package(ModelPackageName=package)
        except sagemaker.exceptions.ClientError as exc:
            raise LoadFailed(
                f"model {model_name}: its package {package}: {exc.response['Error'].get('Message')}"
            ) from None
        containers = (described.get("InferenceSpecification") or {}).get("Containers") or []
        if not containers:
            raise LoadFailed(f"model package {package} has no InferenceSpecification container")
        container = {**containers[0], **{k: v for k, v in container.items() if v}}
        environment = {**(containers[0].get("Environment") or {}), **environment}
    return Container(
        image=str(container.get("Image", "")),
        model_data_url=container.get("ModelDataUrl"),
        environment=environment,
    )


def _s3_location(url: str, what: str) -> tuple[str, str]:
    if not url.startswith("s3://") or "/" not in url[len("s3://") :]:
        raise LoadFailed(f"{what} {url!r} is not an S3 URL (s3://bucket/key)")
    bucket, key = url[len("s3://") :].split("/", 1)
    return bucket, key


def fetch_archive(s3, url: str, into: Path, what: str) -> Path:
    """s3://bucket/key.tar.gz extracted into `into` (members that would land outside it
    are refused: tarfile's data filter)."""
    bucket, key = _s3_location(url, what)
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=into.parent, prefix=".fetch-") as scratch:
        archive = Path(scratch) / "archive.tar.gz"
        try:
            s3.download_file(bucket, key, str(archive))
        except Exception as exc:  # noqa: BLE001 - botocore's ClientError, a 404 HEAD
            raise LoadFailed(f"cannot read the {what} {url}: {exc}") from None
        try:
            with tarfile.open(archive, mode="r:gz") as tar:
                tar.extractall(into, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise LoadFailed(f"the {what} {url} is not a tar.gz archive: {exc}") from None
    return into


@dataclass
class ServedVariant:
    """A production variant, loaded: model_fn's model and the serving code's functions."""

    endpoint: str
    variant: str
    model_name: str
    container: Container
    module: ModuleType = field(repr=False)
    model: Any = field(repr=False)


@contextlib.contextmanager
def _own_modules(code_dir: Path, owned: dict[str, ModuleType]) -> Iterator[None]:
    """The endpoint's code folder on sys.path and its own modules in sys.modules while the
    block runs (an import or model_fn, which may unpickle its classes); afterwards both are
    as they were, and the modules the block imported from that folder are the endpoint's."""
    folder = str(code_dir)
    with _IMPORTS:
        saved: dict[str, ModuleType | None] = {name: sys.modules.get(name) for name in owned}
        sys.modules.update(owned)
        before = dict(sys.modules)
        sys.path.insert(0, folder)
        try:
            yield
        finally:
            sys.path.remove(folder)
            root = code_dir.resolve()
            for name, module in list(sys.modules.items()):
                file = getattr(module, "__file__", None)
                mine = name in owned or (
                    before.get(name) is not module
                    and file is not None
                    and Path(file).resolve().is_relative_to(root)
                )
                if mine:
                    owned[name] = module
                    del sys.modules[name]
            for name, earlier in saved.items():
                if earlier is not None:
                    sys.modules[name] = earlier


def load_variant(
    *, s3, endpoint: str, variant: str, model_name: str, container: Container, folder: Path
) -> ServedVariant:
    """The variant's model data and serving code fetched into `folder` (model/ and code/),
    the code imported as the endpoint's own and model_fn run; LoadFailed saying why not."""
    if not container.model_data_url:
        raise LoadFailed(f"model {model_name} has no ModelDataUrl (model.tar.gz) to serve")
    model_dir = fetch_archive(s3, container.model_data_url, folder / "model", "model data")
    program = container.environment.get("SAGEMAKER_PROGRAM")
    if not program:
        raise LoadFailed(
            f"model {model_name} names no SAGEMAKER_PROGRAM (its serving code's entry point) "
            "in its container's Environment"
        )
    submitted = container.environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if submitted.startswith("s3://"):
        code_dir = fetch_archive(s3, submitted, folder / "code", "serving code")
    else:  # the scikit-learn container's default: the model.tar.gz's code/ folder
        code_dir = model_dir / MODEL_CODE_FOLDER
    source = code_dir / program
    if not source.is_file():
        raise LoadFailed(
            f"no {program} in the serving code ({submitted or 'the model data code/ folder'})"
        )
    owned: dict[str, ModuleType] = {}
    stem = re.sub(r"\W", "_", Path(program).stem)
    name = f"_dp_endpoint_{next(_NUMBER)}_{stem}"
    try:
        with _own_modules(code_dir, owned):
            spec = importlib.util.spec_from_file_location(name, source)
            if spec is None or spec.loader is None:
                raise LoadFailed(f"{program} is not a Python source file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    except LoadFailed:
        raise
    except Exception as exc:
        raise LoadFailed(f"cannot import {program}: {type(exc).__name__}: {exc}") from None
    lacking = [f for f in SERVING_FUNCTIONS if not callable(getattr(module, f, None))]
    if lacking:
        raise LoadFailed(
            f"{program} does not define {', '.join(lacking)}: the local endpoint runs the "
            "serving code's own functions, not the container's defaults"
        )
    try:
        with _own_modules(code_dir, owned):
            model = module.model_fn(str(model_dir))
    except Exception as exc:
        raise LoadFailed(
            f"model_fn could not load {container.model_data_url}: {type(exc).__name__}: {exc}"
        ) from None
    return ServedVariant(endpoint, variant, model_name, container, module, model)


# ----------------------------------------------------------------------------- answers


def error(status: int, code: str, body: dict[str, Any]) -> RawResponse:
    return RawResponse(
        status,
        json.dumps(body).encode(),
        [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", f"{code}:{ERROR_NAMESPACE}"),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )


def not_found(name: str, account: str) -> RawResponse:
    return error(
        400, "ValidationError", {"message": f"Endpoint {name} of account {account} not found."}
    )


def invoke(
    served: ServedVariant,
    body: bytes,
    content_type: str | None,
    accept: str | None,
    *,
    region: str,
    account: str,
) -> RawResponse:
    """input_fn, predict_fn and output_fn on the request; a ModelError if one raised."""
    module = served.module
    try:
        data = module.input_fn(body, content_type or JSON)
        prediction = module.predict_fn(data, served.model)
        answer = module.output_fn(prediction, accept or JSON)
    except Exception as exc:  # noqa: BLE001 - any failure of the model is a ModelError
        status = int(getattr(exc, "status_code", 500))
        message = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        if status >= 500:
            traceback.print_exc(file=sys.stderr)  # the endpoint's log: the server's
        kind = "client" if 400 <= status < 500 else "server"
        group = f"/aws/sagemaker/Endpoints/{served.endpoint}"
        return error(
            424,
            "ModelError",
            {
                "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
                "Message": f'Received {kind} error ({status}) from primary with message "{message}".',
                "OriginalStatusCode": status,
                "OriginalMessage": message,
                "LogStreamArn": f"arn:aws:logs:{region}:{account}:log-group:{group}",
            },
        )
    if isinstance(answer, tuple):
        payload, answer_type = answer[0], answer[1]
    else:
        payload, answer_type = answer, accept or JSON
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return RawResponse(
        200,
        bytes(payload),
        [
            ("Content-Type", answer_type),
            ("x-Amzn-Invoked-Production-Variant", served.variant),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
