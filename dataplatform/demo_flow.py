"""`dp demo`'s flow as data: its stages, what each runs (the plan), and the outcome it
ends with: one reconciliation per dataset (ingested = curated + quarantined + duplicates
removed + Firehose errors) and each model's registration. The command (cli/demo.py) runs
the plan with the same helpers as the single commands and prints the outcome; the
arithmetic is tested here without a platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dataplatform import demo


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs, in order, from the spec and the sample files it wrote."""

    files: dict[str, Path]  # dataset -> the sample file ingested
    streams: list[str]  # of those, the stream datasets (Kinesis + Firehose); others batch
    features: list[tuple[str, str | None]]  # feature table, cutoff (as_of) or None
    steps: list[tuple[str, dict[str, str]]]  # EMR step, its arguments
    queries: list[demo.DemoQuery]
    models: list[str]

    def stages(self) -> list[str]:
        batches = [name for name in self.files if name not in self.streams]
        return [
            "1/7 start and provision the local platform",
            f"2/7 ingest: Kinesis + Firehose delivery ({', '.join(self.streams)}), upload to raw "
            f"({', '.join(batches)})",
            "3/7 crawl the raw zone",
            "4/7 curate: the Glue job's script on local Spark",
            "5/7 feature tables and basket rules (EMR steps on local Spark) and Athena SQL",
            "6/7 train, gate and register the models (SageMaker's script, locally)",
            "7/7 real time: approve and serve the served models (churn, clv), a fresh day "
            "streams in, at-risk and high-value customers flagged; the outcomes arrive and "
            "`dp monitor churn` reports",
        ]


def plan(platform, names, files: dict[str, Path]) -> DemoPlan:
    """The demo over `platform` (the spec) with its physical `names`."""
    return DemoPlan(
        files=files,
        streams=[d.name for d in platform.datasets if d.is_stream and d.name in files],
        features=demo.feature_builds(platform),
        steps=[("frequent_itemsets", dict(demo.BASKET_MINING))],
        queries=demo.demo_queries(names.curated_database, names.features_database)
        + [demo.rules_query(names.features_database, demo.BASKET_MINING["output-name"])],
        models=[m.name for m in platform.models],
    )


@dataclass(frozen=True)
class Reconciliation:
    """Every record ingested is accounted for, once."""

    dataset: str
    ingested: int
    curated: int
    quarantined: int
    duplicates: int
    firehose_errors: int  # records the Firehose transform sent to the error prefix

    @property
    def accounted(self) -> int:
        return self.curated + self.quarantined + self.duplicates + self.firehose_errors

    @property
    def balanced(self) -> bool:
        return self.accounted == self.ingested

    def line(self) -> str:
        return (
            f"{'[green]OK[/green]' if self.balanced else '[red]MISMATCH[/red]'} {self.dataset}: "
            f"ingested {self.ingested:,} = curated {self.curated:,} + quarantined "
            f"{self.quarantined:,} + duplicates {self.duplicates:,} + Firehose errors "
            f"{self.firehose_errors:,}"
        )


def reconcile(dataset: str, ingested, report: dict) -> Reconciliation:
    """From an ingest's result (records, and the delivery's processing failures) and the
    curate run's report (rows_curated, rows_quarantined, duplicates_removed)."""
    return Reconciliation(
        dataset=dataset,
        ingested=ingested.records,
        curated=report["rows_curated"],
        quarantined=report["rows_quarantined"],
        duplicates=report["duplicates_removed"],
        firehose_errors=ingested.delivery.processing_failed if ingested.delivery else 0,
    )


@dataclass(frozen=True)
class ModelOutcome:
    model: str
    package_arn: str | None  # None: below its quality gate, not registered
    model_dir: str | None

    def line(self) -> str:
        verdict = (
            "[green]registered[/green] (PendingManualApproval)"
            if self.package_arn
            else "[red]NOT registered: below its quality gate[/red]"
        )
        return f"{self.model}: {verdict}; plots in {self.model_dir}"


@dataclass
class DemoOutcome:
    reconciliations: list[Reconciliation] = field(default_factory=list)
    models: list[ModelOutcome] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return all(r.balanced for r in self.reconciliations) and all(
            m.package_arn for m in self.models
        )

    def lines(self) -> list[str]:
        return [r.line() for r in self.reconciliations] + [m.line() for m in self.models]


def oracle_line(run) -> str | None:
    """For the churn and clv models: the test metric beside the best possible (the
    generator's true probabilities, or expected values, on the same test customers)."""
    if run.model not in ("churn", "clv") or not run.model_dir:
        return None
    predictions = Path(run.model_dir) / "test_predictions.csv"
    if run.model == "clv":
        oracle = demo.value_oracle_r2(predictions)
        return (
            f"clv: test R2 {run.metrics['test']['r2']:.4f}; the generator's expected values "
            f"reach {oracle:.4f} on the same test customers (the best possible)"
        )
    oracle = demo.churn_oracle_auc(predictions)
    return (
        f"churn: test AUC {run.metrics['test']['auc']:.4f}; the generator's true "
        f"probabilities reach {oracle:.4f} on the same test customers (the best possible)"
    )


# What the generator planted, per served model, as a function of the features it scored:
# what its flags are compared with at the model's threshold.
PLANTED = {
    "churn": ("churn probability", demo.churn_probability),
    "clv": ("expected value", demo.expected_value),
}

# What happened after the scores (a monitored model's outcomes upload), as the generator
# plants it for the score items of a scoring pass.
OUTCOMES = {"churn": demo.churn_outcomes_csv}


@dataclass(frozen=True)
class PlantedTruth:
    """The flagged customers against the generator's truth at the same threshold: the true
    churn probability (demo.churn_probability), or the expected customer value
    (demo.expected_value), of the very features the model scored."""

    scored: int
    flagged: int
    truly_at_risk: int
    precision: float | None  # of the flagged, the share truly at risk
    recall: float | None  # of those truly at risk, the share flagged
    planted: str = PLANTED["churn"][0]  # what the truth is

    def line(self) -> str:
        def share(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        return (
            f"planted truth: {self.flagged} flagged of {self.scored} scored today; "
            f"{self.truly_at_risk} truly at or above it (the generator's {self.planted} >= "
            f"the threshold); precision {share(self.precision)}, recall {share(self.recall)}"
        )


def planted_truth(scores: list[dict], threshold: float, model: str = "churn") -> PlantedTruth:
    """From the score items a scoring pass of `model` wrote (their features and flags)."""
    import json

    planted, truth_of = PLANTED[model]
    latest: dict[str, dict] = {}
    for s in scores:  # a customer scored twice in the pass: its last score counts
        latest[s["customer_id"]] = s
    flagged = {c for c, s in latest.items() if s["flagged"]}
    truth = {c for c, s in latest.items() if truth_of(json.loads(s["features"])) >= threshold}
    hits = len(flagged & truth)
    return PlantedTruth(
        scored=len(latest),
        flagged=len(flagged),
        truly_at_risk=len(truth),
        precision=hits / len(flagged) if flagged else None,
        recall=hits / len(truth) if truth else None,
        planted=planted,
    )
