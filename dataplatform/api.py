"""The platform from Python (a notebook, a script), the awswrangler way:

    import dataplatform as dp
    lake = dp.connect(target="local")          # or dp.connect(target="aws", env="prod")
    frame = lake.query("SELECT event_type, count(*) AS n FROM telecom_events GROUP BY 1")

`Lake` holds the same platform object the `dp` command uses for that target
(runtime/local/platform.py or runtime/aws/platform.py) and calls it by dataset, feature
table and model names; results are the objects the command prints (a pandas DataFrame for
queries). Failures raise the platform's own errors (runtime/errors.py) rather than exit."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from dataplatform.spec import load_spec


class Lake:
    def __init__(self, platform) -> None:
        self.platform = platform  # LocalPlatform or AwsPlatform

    @property
    def names(self):
        return self.platform.names

    def query(self, sql: str) -> pd.DataFrame:
        """Athena SQL in the environment's workgroup (default database: curated)."""
        return self.platform.query(sql).frame

    def ingest(
        self,
        dataset: str,
        records: Iterable[dict] | None = None,
        *,
        file: str | Path | None = None,
        from_line: int = 1,
        progress: Callable[[int], None] | None = None,
    ):
        """Records (dicts) or a file onto the dataset's stream (delivered to raw), or a file
        uploaded to raw for a batch dataset."""
        return self.platform.ingest(
            self.platform.dataset(dataset),
            records,
            file=Path(file) if file is not None else None,
            from_line=from_line,
            progress=progress,
        )

    def crawl(self, dataset: str):
        return self.platform.crawl(self.platform.dataset(dataset))

    def curate(
        self,
        dataset: str,
        *,
        dates: list[str] | None = None,
        progress: Callable[[str], None] = lambda line: None,
    ):
        """The dataset's curate Glue job (incremental unless `dates`); its report in `.report`
        (local) or in the run's report object (aws)."""
        return self.platform.curate(self.platform.dataset(dataset), dates=dates, progress=progress)

    def features(self, name: str, *, as_of: str | None = None):
        """Build the feature table spec/features/NAME.sql (an EMR step)."""
        return self.platform.emr_run(
            "features", {"name": name, **({"as-of": as_of} if as_of else {})}
        )

    def emr_run(self, step: str, args: dict[str, str] | None = None):
        return self.platform.emr_run(step, args or {})

    def train(self, model: str, *, progress: Callable[[str], None] | None = None):
        """Train, gate and (if it passes) register the model; the run has `.metrics` and
        `.package_arn` (None when the gate refused it)."""
        known = {m.name for m in self.platform.platform.models}
        if model not in known:
            raise KeyError(f"unknown model {model!r}; known: {', '.join(sorted(known))}")
        return self.platform.train(model, progress=progress)


def _local(platform, env: str, state_dir: Path | None):
    from dataplatform.runtime.local.platform import LocalPlatform

    return LocalPlatform(platform, env, state_dir=state_dir)


def _aws(platform, env: str, state_dir: Path | None):
    from dataplatform.runtime.aws.platform import AwsPlatform

    return AwsPlatform(platform, env)


# the platform of each target, made from the spec, the environment and the local state folder
PLATFORMS = {"local": _local, "aws": _aws}


def connect(
    target: str = "local",
    env: str = "dev",
    *,
    spec: str | Path = "spec",
    state_dir: str | Path | None = None,
) -> Lake:
    """The platform of `env` on `target`: "local" (the running embedded platform, as
    `dp local up` starts it; `state_dir` defaults to $DP_HOME or .dp) or "aws" (the
    deployed environment, with the usual AWS credentials)."""
    if target not in PLATFORMS:
        raise ValueError(f"target {target!r}: use {' or '.join(PLATFORMS)}")
    return Lake(
        PLATFORMS[target](
            load_spec(Path(spec)), env, Path(state_dir).resolve() if state_dir else None
        )
    )
