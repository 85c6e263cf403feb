"""The whole spec folder, loaded and validated into one Platform."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplatform.online.features import STREAM_FEATURES
from dataplatform.spec.core import NAME_PATTERN, SpecError, SpecProblem, SpecProblems, read_yaml
from dataplatform.spec.datasets import Dataset, parse_dataset
from dataplatform.spec.delivery import Delivery, check_enabled, parse_delivery
from dataplatform.spec.environments import Environment, parse_platform
from dataplatform.spec.models import (
    SCORE_RECORD_FIELDS,
    FeatureTable,
    Model,
    feature_sql_columns,
    parse_model,
)
from dataplatform.spec.personas import Persona, parse_personas


@dataclass(frozen=True)
class Platform:
    project: str
    description: str
    environments: Mapping[str, Environment]
    datasets: tuple[Dataset, ...]
    features: tuple[FeatureTable, ...]
    models: tuple[Model, ...]
    root: str = ""
    personas: tuple[Persona, ...] = ()  # spec/personas.yaml (none: no persona rules)
    delivery: Delivery = Delivery()  # spec/platform.yaml `delivery:` (default: no pipeline)

    def environment(self, name: str) -> Environment:
        if name not in self.environments:
            known = ", ".join(sorted(self.environments))
            raise SpecError(
                [
                    SpecProblem(
                        "spec/platform.yaml",
                        "environments",
                        f"unknown environment {name!r}; known: {known}. Pick one (cdk: -c env=NAME, dp: --env NAME) "
                        "or add it under `environments:`",
                    )
                ]
            )
        return self.environments[name]

    def with_delivery_enabled(self) -> Platform:
        """This platform with its pipeline on (`-c delivery=true` over a spec that leaves it
        off): held to the same requirements as `delivery.enabled: true` in the spec."""
        delivery = dataclasses.replace(self.delivery, enabled=True)
        problems = SpecProblems()
        check_enabled(delivery, self.environments, "spec/platform.yaml", problems)
        problems.raise_if_any()
        return dataclasses.replace(self, delivery=delivery)

    def dataset(self, name: str) -> Dataset:
        for d in self.datasets:
            if d.name == name:
                return d
        known = ", ".join(d.name for d in self.datasets) or "none"
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}")

    def persona(self, name: str) -> Persona:
        for p in self.personas:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.personas) or "none (add spec/personas.yaml)"
        raise KeyError(f"unknown persona {name!r}; known (spec/personas.yaml): {known}")

    @property
    def stream_datasets(self) -> tuple[Dataset, ...]:
        return tuple(d for d in self.datasets if d.is_stream)

    def to_dict(self) -> dict[str, Any]:
        """Everything but `delivery` and `root`: the compiled spec is what the jobs and
        Lambdas read in the account. The pipeline's settings are synth-time only, and the
        folder the spec was read from is this machine's: leaving them out keeps every asset
        byte for byte the same whether the pipeline or `cdk deploy` deploys it, from any
        checkout or working directory (with the root in, `dp` in the repository and a
        notebook given the absolute path built different job libraries, and the local
        Spark driver restarted for the "changed" library)."""
        data = dataclasses.asdict(self)
        del data["delivery"], data["root"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1, default=list)


def _load_named(
    paths: list[Path],
    what: str,
    parse: Callable[[dict, str, SpecProblems], Any],
    rel: Callable[[Path], str],
    problems: SpecProblems,
) -> tuple[list[Any], dict[str, str]]:
    """Each YAML file's object (`parse` returns None after reporting its problems), and each
    name's file; a second object of a name already declared is a problem, and left out."""
    loaded: list[Any] = []
    first_file: dict[str, str] = {}
    for path in paths:
        data = read_yaml(path, rel(path), problems)
        if data is None:
            continue
        obj = parse(data, rel(path), problems)
        if obj is None:
            continue
        if obj.name in first_file:
            problems.add(
                rel(path),
                "name",
                f"duplicate {what} name {obj.name!r}, already "
                f"declared in {first_file[obj.name]}; rename one",
            )
            continue
        first_file[obj.name] = rel(path)
        loaded.append(obj)
    return loaded, first_file


def _check_served(
    model: Model,
    features: Mapping[str, FeatureTable],
    datasets: Mapping[str, Dataset],
    problems: SpecProblems,
) -> None:
    """What serving `model` in real time needs beyond its own section: inputs the scorer can
    compute from its stream's events (dataplatform/online/features.py restates the feature
    SQL per stream), and a scores dataset that takes the scores the scorer sends."""
    serving = model.serving
    assert serving is not None
    rel = model.source_file
    table = features.get(model.features_table)
    online = STREAM_FEATURES.get(serving.stream)
    if serving.stream in datasets and online is None:
        problems.add(
            rel,
            "serving.stream",
            f"no online features are computed from {serving.stream}'s events: "
            f"dataplatform/online/features.py computes them for "
            f"{', '.join(sorted(STREAM_FEATURES))}; serve the model from one of those, or "
            f"restate its feature SQL for {serving.stream} there first",
        )
    elif table is not None and table.columns is None:
        problems.add(
            rel,
            "features_table",
            f"a served model's inputs must be known: {table.source_file} selects `*`; name "
            "its output columns, as the scorer sends exactly the model's inputs",
        )
    elif table is not None and online is not None:
        missing = [c for c in model.feature_columns if c not in online]
        if missing:
            problems.add(
                rel,
                "features_table",
                f"{', '.join(map(repr, missing))} of {table.source_file} "
                f"{'is' if len(missing) == 1 else 'are'} not computed online from "
                f"{serving.stream} (dataplatform/online/features.py computes: "
                f"{', '.join(online)}), so the scorer could not send "
                f"{'it' if len(missing) == 1 else 'them'} to the endpoint: restate "
                f"{'it' if len(missing) == 1 else 'them'} there with the SQL's definition "
                "(and in the test comparing both), or leave "
                f"{'it' if len(missing) == 1 else 'them'} out of the model (exclude_columns)",
            )
    scores = datasets.get(serving.scores_dataset) if serving.scores_dataset else None
    if scores is None or not scores.is_stream:
        return  # none, or reported with serving.scores_dataset above
    kept = {c.name: c for c in scores.kept_columns}
    sent = (*SCORE_RECORD_FIELDS, model.score_field)
    absent = [c for c in sent if c not in kept]
    unsent = [c for c, column in kept.items() if column.required and c not in sent]
    fix = (
        f"spec/datasets/{scores.name}.yaml is the scores of one model of its problem (see "
        "churn_scores.yaml for a classifier, clv_scores.yaml for a regression)"
    )
    if absent:
        problems.add(
            rel,
            "serving.scores_dataset",
            f"{scores.name} ({scores.source_file}) does not take {', '.join(absent)} of the "
            f"scores of a {model.problem} model (the scorer sends: {', '.join(sent)}): add "
            f"the column(s); {fix}",
        )
    if unsent:
        problems.add(
            rel,
            "serving.scores_dataset",
            f"{scores.name} ({scores.source_file}) requires {', '.join(unsent)}, which the "
            f"scores of a {model.problem} model do not carry, so each would be quarantined; "
            f"{fix}",
        )
    action = kept.get("action")
    if action is not None and action.allowed is not None and serving.action not in action.allowed:
        problems.add(
            rel,
            "serving.action",
            f"{serving.action!r} is not an allowed action of {scores.name} "
            f"({scores.source_file}: {', '.join(map(str, action.allowed))}), so its scores "
            "would be quarantined: allow it there",
        )
    column = kept.get("threshold")
    if column is not None and not (
        (column.min is None or serving.threshold >= column.min)
        and (column.max is None or serving.threshold <= column.max)
    ):
        problems.add(
            rel,
            "serving.threshold",
            f"{serving.threshold} is outside the threshold column's range in {scores.name} "
            f"({scores.source_file}: min {column.min}, max {column.max}), so its scores "
            f"would be quarantined; {fix}",
        )


def load_spec(root: str | Path = "spec") -> Platform:
    """Load and validate the whole spec folder; raise SpecError listing every problem."""
    root = Path(root)
    problems = SpecProblems()

    def rel(path: Path) -> str:
        try:
            return str(Path("spec") / path.relative_to(root))
        except ValueError:
            return str(path)

    platform_file = root / "platform.yaml"
    if not platform_file.is_file():
        raise SpecError(
            [
                SpecProblem(
                    rel(platform_file),
                    "(file)",
                    f"missing; the spec folder {root} needs a platform.yaml",
                )
            ]
        )
    data = read_yaml(platform_file, rel(platform_file), problems) or {}
    project, description, environments = parse_platform(data, rel(platform_file), problems)
    declared = data.get("environments") if isinstance(data.get("environments"), dict) else None
    delivery = parse_delivery(
        data.get("delivery"),
        environments,
        rel(platform_file),
        problems,
        declared=[str(name) for name in declared] if declared else None,
    )

    datasets, first_file = _load_named(
        sorted((root / "datasets").glob("*.y*ml")), "dataset", parse_dataset, rel, problems
    )

    features: dict[str, FeatureTable] = {}
    for path in sorted((root / "features").glob("*.sql")):
        name = path.stem
        if not NAME_PATTERN.match(name):
            problems.add(
                rel(path),
                "(file name)",
                f"invalid feature table name {name!r}; rename "
                "the file to lower case letters, digits and _",
            )
            continue
        if name in first_file:
            problems.add(
                rel(path),
                "(file name)",
                f"feature table {name!r} has the same name as "
                f"dataset {first_file[name]}; rename the file",
            )
        sql = path.read_text(encoding="utf-8")
        try:
            columns = feature_sql_columns(sql)
        except Exception as exc:  # sqlglot's ParseError and our own ValueError
            problems.add(rel(path), "(sql)", f"cannot parse the SQL: {exc}")
            continue
        features[name] = FeatureTable(name=name, sql=sql, columns=columns, source_file=rel(path))

    models, _ = _load_named(
        sorted((root / "models").glob("*.y*ml")),
        "model",
        lambda data, rel_, problems_: parse_model(data, rel_, features, problems_),
        rel,
        problems,
    )

    streams = {d.name for d in datasets if d.is_stream}
    for model in models:
        if model.serving and model.serving.stream and model.serving.stream not in streams:
            problems.add(
                model.source_file,
                "serving.stream",
                f"{model.serving.stream!r} is not a stream dataset; stream datasets: "
                f"{', '.join(sorted(streams)) or 'none'} (ingestion: stream in spec/datasets/)",
            )
        scores = model.serving.scores_dataset if model.serving else None
        if scores and scores not in streams:
            problems.add(
                model.source_file,
                "serving.scores_dataset",
                f"{scores!r} is not a stream dataset; declare it in spec/datasets/{scores}.yaml "
                "with ingestion: stream (see churn_scores.yaml) or leave the field out",
            )

    by_name = {d.name: d for d in datasets}
    for model in models:
        if model.serving is not None:
            _check_served(model, features, by_name, problems)

    for model in models:
        watch = model.monitoring
        if watch is None or watch.outcomes_dataset is None:
            continue
        outcomes = by_name.get(watch.outcomes_dataset)
        if outcomes is None:
            problems.add(
                model.source_file,
                "monitoring.outcomes.dataset",
                f"{watch.outcomes_dataset!r} is not a dataset; declare it in "
                f"spec/datasets/{watch.outcomes_dataset}.yaml (see churn_outcomes.yaml)",
            )
            continue
        kept = {c.name: c for c in outcomes.kept_columns}
        for field_, column, types in (
            ("column", watch.outcome_column, ("boolean", "int")),
            ("treated_column", watch.treated_column, ("boolean",)),
            ("retained_column", watch.retained_column, ("boolean", "int")),
            *(("(id column)", c, None) for c in model.id_columns),
        ):
            if column is None:
                continue
            where = f"monitoring.outcomes.{field_}" if field_ != "(id column)" else "id_columns"
            if column not in kept:
                problems.add(
                    model.source_file,
                    where,
                    f"{column!r} is not a kept column of {outcomes.name} "
                    f"({outcomes.source_file}); its columns: {', '.join(kept)}",
                )
            elif types and kept[column].type not in types:
                problems.add(
                    model.source_file,
                    where,
                    f"{outcomes.name}.{column} is {kept[column].type}; an outcome is "
                    f"{' or '.join(types)}",
                )

    personas: tuple[Persona, ...] = ()
    personas_file = root / "personas.yaml"
    if personas_file.is_file():
        declared = read_yaml(personas_file, rel(personas_file), problems)
        if declared is not None:
            personas = parse_personas(declared, rel(personas_file), streams, problems)

    problems.raise_if_any()
    return Platform(
        project=project,
        description=description,
        environments=environments,
        datasets=tuple(datasets),
        features=tuple(features.values()),
        models=tuple(models),
        root=str(root),
        personas=personas,
        delivery=delivery,
    )
