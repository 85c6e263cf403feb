"""The arguments of the EMR steps (`emr_steps/*.py`): the one place that turns a step name
and the user's `K=V` arguments into

- `step_arguments(step, names, args)`: the step's full argument dict (`{"--name": ...}`, in
  the step's declared order) with the environment's defaults from `Names` (bucket paths,
  Glue databases) and the step's own defaults, and
- `emr_step(step, names, args)`: the EMR step definition for `add_job_flow_steps` (and,
  later, Step Functions' `EmrAddStep`): `spark-submit --deploy-mode cluster` of the
  deployed script with the deployed library zip on `--py-files`.

Pure: no boto3, no Spark. A user key may be written `min-support`, `min_support` or
`--min-support`. Errors (`StepArgumentError`, a ValueError) are one line naming what is
wrong and what is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dataplatform import layout
from dataplatform.naming import Names

# Environment defaults: rendered from the environment's names.
_ENV: dict[str, Callable[[Names], str]] = {
    "curated-path": lambda n: f"s3://{n.curated_bucket}/",
    "features-path": lambda n: f"s3://{n.features_bucket}/",
    "curated-database": lambda n: n.curated_database,
    "features-database": lambda n: n.features_database,
}


@dataclass(frozen=True)
class StepArgument:
    key: str  # without the leading "--"
    help: str
    default: str | None = None  # a constant default; None: none (see env / required)
    env: bool = False  # default comes from the environment's names (_ENV)
    required: bool = False  # the user must give it
    check: Callable[[str], str | None] | None = None  # returns what is wrong, or None


def _fraction(low_open: bool) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        try:
            number = float(value)
        except ValueError:
            return "is not a number"
        ok = (0 < number <= 1) if low_open else (0 <= number <= 1)
        return None if ok else f"must be in {'(0' if low_open else '[0'}, 1]"

    return check


def _identifier(value: str) -> str | None:
    return None if re.fullmatch(r"[a-z][a-z0-9_]*", value) else "must match [a-z][a-z0-9_]*"


def _table(value: str) -> str | None:
    return (
        None
        if re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", value)
        else "must be zone.table or database.table, e.g. curated.baskets"
    )


def _date(value: str) -> str | None:
    return None if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else "is not a date like 2026-11-20"


# Defaults of frequent_itemsets that the step script's argparse uses too.
FREQUENT_ITEMSETS_DEFAULTS = {
    "input-table": "curated.baskets",
    "basket-column": "basket_id",
    "item-column": "item",
    "min-support": "0.05",
    "min-confidence": "0.5",
    "output-name": "basket",
}

STEPS: dict[str, tuple[StepArgument, ...]] = {
    "features": (
        StepArgument(
            "name", "feature table: spec/features/NAME.sql", required=True, check=_identifier
        ),
        StepArgument("as-of", "cutoff day YYYY-MM-DD (default: the SQL's own)", check=_date),
        StepArgument("curated-path", "curated zone root", env=True),
        StepArgument("features-path", "features zone root", env=True),
        StepArgument("features-database", "Glue database the table is registered in", env=True),
        StepArgument(
            "curated-database", "the curated zone's Glue database (Iceberg tables)", env=True
        ),
    ),
    "frequent_itemsets": (
        StepArgument(
            "input-table",
            "baskets table: zone.table or database.table (Parquet)",
            default=FREQUENT_ITEMSETS_DEFAULTS["input-table"],
            check=_table,
        ),
        StepArgument(
            "basket-column", "basket id column", default=FREQUENT_ITEMSETS_DEFAULTS["basket-column"]
        ),
        StepArgument(
            "item-column", "item column", default=FREQUENT_ITEMSETS_DEFAULTS["item-column"]
        ),
        StepArgument(
            "min-support",
            "minimum support, a fraction of baskets in (0, 1]",
            default=FREQUENT_ITEMSETS_DEFAULTS["min-support"],
            check=_fraction(True),
        ),
        StepArgument(
            "min-confidence",
            "minimum rule confidence in [0, 1]",
            default=FREQUENT_ITEMSETS_DEFAULTS["min-confidence"],
            check=_fraction(False),
        ),
        StepArgument(
            "output-name",
            "writes tables NAME_itemsets and NAME_rules",
            default=FREQUENT_ITEMSETS_DEFAULTS["output-name"],
            check=_identifier,
        ),
        StepArgument("curated-path", "curated zone root", env=True),
        StepArgument("features-path", "features zone root", env=True),
        StepArgument("curated-database", "the curated zone's Glue database", env=True),
        StepArgument("features-database", "Glue database the tables are registered in", env=True),
    ),
}
assert tuple(STEPS) == layout.EMR_STEPS, "every step of layout.EMR_STEPS has its arguments here"


class StepArgumentError(ValueError):
    """An unknown step, a malformed `K=V`, an argument the step does not accept, or a
    required one missing."""


def _step(step: str) -> tuple[StepArgument, ...]:
    if step not in STEPS:
        raise StepArgumentError(f"unknown EMR step {step!r}; steps: {', '.join(layout.EMR_STEPS)}")
    return STEPS[step]


def accepted(step: str) -> list[str]:
    """The keys `step` accepts, in its order."""
    return [a.key for a in _step(step)]


def normalize_key(key: str) -> str:
    return key.strip().removeprefix("--").replace("_", "-")


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """`["min-support=0.1", ...]` -> `{"min-support": "0.1"}`; the last of a repeated key
    wins. A pair without `=` or with an empty key is refused."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not normalize_key(key):
            raise StepArgumentError(
                f"--arg {pair!r}: write it as KEY=VALUE, e.g. --arg min-support=0.05"
            )
        parsed[normalize_key(key)] = value
    return parsed


def step_arguments(
    step: str, names: Names, args: Mapping[str, str] | Iterable[str] = ()
) -> dict[str, str]:
    """The step's full argument dict, `{"--key": "value"}` in the step's declared order:
    the user's values over the defaults. Arguments without a value and without a default
    (e.g. features' `as-of`) are left out."""
    declared = _step(step)
    user = (
        parse_pairs(args)
        if not isinstance(args, Mapping)
        else {normalize_key(k): str(v) for k, v in args.items()}
    )
    keys = [a.key for a in declared]
    unknown = [k for k in user if k not in keys]
    if unknown:
        raise StepArgumentError(
            f"step {step} does not accept {', '.join(unknown)}; it accepts: {', '.join(keys)}"
        )
    result: dict[str, str] = {}
    for argument in declared:
        value = user.get(argument.key)
        if value is None or value == "":
            if argument.required:
                raise StepArgumentError(
                    f"step {step} needs {argument.key}: --arg {argument.key}=... ({argument.help})"
                )
            value = _ENV[argument.key](names) if argument.env else argument.default
        elif argument.check is not None and (problem := argument.check(value)):
            raise StepArgumentError(f"step {step}: {argument.key}={value!r} {problem}")
        if value is not None and value != "":
            result[f"--{argument.key}"] = value
    return result


def script_uri(step: str, names: Names) -> str:
    _step(step)
    return f"s3://{names.artifacts_bucket}/{layout.emr_step_key(step)}"


def library_uri(names: Names) -> str:
    return f"s3://{names.artifacts_bucket}/{layout.LIBRARY_KEY}"


def step_name(step: str, arguments: Mapping[str, str]) -> str:
    """A readable step name: `features customer_features`, `frequent_itemsets basket`."""
    detail = arguments.get("--name") or arguments.get("--output-name")
    return f"{step} {detail}" if detail else step


def emr_step(step: str, names: Names, args: Mapping[str, str] | Iterable[str] = ()) -> dict:
    """The EMR step definition (AddJobFlowSteps' `Steps[i]`) running `step` in cluster mode."""
    arguments = step_arguments(step, names, args)
    command = [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        "--py-files",
        library_uri(names),
        script_uri(step, names),
    ]
    for key, value in arguments.items():
        command += [key, value]
    # The prefix marks the platform's steps: the monitoring stack alerts on their failures.
    return {
        "Name": f"{names.prefix} {step_name(step, arguments)}",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": command},
    }


def output_tables(step: str, arguments: Mapping[str, str]) -> list[tuple[str, str]]:
    """(database, table) the step registers, from its full argument dict."""
    database = arguments.get("--features-database", "")
    if step == "features":
        return [(database, arguments["--name"])]
    if step == "frequent_itemsets":
        name = arguments["--output-name"]
        return [(database, f"{name}_itemsets"), (database, f"{name}_rules")]
    _step(step)
    return []
