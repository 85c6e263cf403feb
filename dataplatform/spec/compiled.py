"""The compiled spec (`Platform.to_json`), read back where there is no PyYAML or spec
folder: the Firehose transform Lambda and the Glue/EMR jobs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dataplatform.spec.datasets import Column, Dataset, Maintenance


def dataset_from_dict(data: Mapping[str, Any]) -> Dataset:
    """Rebuild a Dataset from `dataclasses.asdict` output (the compiled spec JSON)."""
    columns = tuple(
        Column(**{**c, "allowed": tuple(c["allowed"]) if c.get("allowed") is not None else None})
        for c in data["columns"]
    )
    return Dataset(
        **{
            **data,
            "columns": columns,
            "primary_key": tuple(data["primary_key"]),
            "pii": tuple(data["pii"]),
            # older compiled specs (a library built before Iceberg) have neither
            "maintenance": Maintenance(**data.get("maintenance") or {}),
        }
    )


def load_compiled_dataset(path: str | Path, name: str) -> Dataset:
    """Read one dataset from a compiled spec JSON file (written by `Platform.to_json`)."""
    return compiled_dataset(Path(path).read_text(encoding="utf-8"), name, source=str(path))


def compiled_dataset(text: str, name: str, *, source: str = "the compiled spec") -> Dataset:
    """One dataset from compiled spec JSON text."""
    compiled = json.loads(text)
    for data in compiled["datasets"]:
        if data["name"] == name:
            return dataset_from_dict(data)
    known = ", ".join(d["name"] for d in compiled["datasets"])
    raise KeyError(f"unknown dataset {name!r} in {source}; known datasets: {known}")


def bundled_dataset(name: str) -> Dataset | None:
    """The dataset from the spec.json inside the deployed `dataplatform` library, or None in a
    source checkout. pkgutil reads it from a directory or from the zip Glue and EMR import."""
    import pkgutil

    try:
        data = pkgutil.get_data("dataplatform", "spec.json")
    except (FileNotFoundError, OSError):
        return None
    return compiled_dataset(data.decode("utf-8"), name) if data is not None else None
