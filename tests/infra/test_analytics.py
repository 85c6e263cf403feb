"""AnalyticsStack: the Athena workgroup (enforced settings, KMS-encrypted results, engine
v3, per-query scan cutoff from the environment) and the named queries per dataset.

Expected values come from the spec, naming and layout; cross-stack references are
resolved through the storage stack's exports to the physical names they stand for.
"""

from __future__ import annotations

import pytest
import sqlglot
from aws_cdk.assertions import Match
from sqlglot import exp

from dataplatform import layout
from dataplatform.spec import Dataset, load_spec
from stacks.platform import REPO_ROOT
from tests.infra.conftest import Synth, lake_key, resolve

DATASETS = [d.name for d in load_spec(REPO_ROOT / "spec").datasets]
VARIANTS = [("dev", False), ("dev", True), ("prod", False), ("prod", True)]
COLUMN_MEASURES = ("_null_rate", "_min", "_avg", "_max")


# ----------------------------------------------------------------------------- helpers


def workgroup(synth: Synth) -> tuple[str, dict]:
    matches = [
        (lid, r)
        for lid, r in synth.resources("analytics", "AWS::Athena::WorkGroup").items()
        if r["Properties"]["Name"] == synth.names.workgroup
    ]
    assert len(matches) == 1, matches
    return matches[0]


def destroy_opted_in(synth: Synth) -> bool:
    """Both opt-ins: the environment allows it and the deployer asked for it."""
    return synth.platform.environment(synth.env).allow_destroy and synth.destroy_data


def parsed_queries(synth: Synth) -> list[tuple[dict, exp.Expression]]:
    return [
        (r["Properties"], sqlglot.parse_one(r["Properties"]["QueryString"], read="athena"))
        for r in synth.resources("analytics", "AWS::Athena::NamedQuery").values()
    ]


def tables_of(query: exp.Expression) -> set[tuple[str, str]]:
    return {(t.db, t.name) for t in query.find_all(exp.Table)}


def queries_of(synth: Synth, ds: str) -> list[exp.Expression]:
    table = (synth.names.curated_database, synth.names.table(ds))
    return [q for _, q in parsed_queries(synth) if table in tables_of(q)]


def aliased(query: exp.Select) -> dict[str, exp.Expression]:
    return {e.alias: e.this for e in query.expressions if isinstance(e, exp.Alias)}


def expected_column_measures(dataset: Dataset) -> set[str]:
    expected = {f"{c.name}_null_rate" for c in dataset.kept_columns}
    expected |= {
        f"{c.name}_{m}" for c in dataset.kept_columns if c.is_numeric for m in ("min", "avg", "max")
    }
    return expected


def profile_query(synth: Synth, ds: str) -> exp.Select:
    profiles = [
        q for q in queries_of(synth, ds) if any(a.endswith("_null_rate") for a in aliased(q))
    ]
    assert len(profiles) == 1, f"{ds}: {len(profiles)} profile queries"
    return profiles[0]


def column_names(node: exp.Expression) -> set[str]:
    return {c.name for c in node.find_all(exp.Column)}


# ----------------------------------------------------------------------------- workgroup


def test_workgroup_enforces_its_configuration_on_engine_v3(each_env):
    each_env.template("analytics").has_resource_properties(
        "AWS::Athena::WorkGroup",
        {
            "Name": each_env.names.workgroup,
            "State": "ENABLED",
            "WorkGroupConfiguration": Match.object_like(
                {
                    "EnforceWorkGroupConfiguration": True,
                    "PublishCloudWatchMetricsEnabled": True,
                    "EngineVersion": {"SelectedEngineVersion": "Athena engine version 3"},
                }
            ),
        },
    )


def test_workgroup_bytes_scanned_cutoff_follows_environment_setting(each_env):
    cutoff = each_env.platform.environment(each_env.env).athena.bytes_scanned_cutoff
    each_env.template("analytics").has_resource_properties(
        "AWS::Athena::WorkGroup",
        {
            "Name": each_env.names.workgroup,
            "WorkGroupConfiguration": Match.object_like({"BytesScannedCutoffPerQuery": cutoff}),
        },
    )


def test_bytes_scanned_cutoff_differs_between_dev_and_prod(dev, prod):
    cutoffs = {
        s.env: workgroup(s)[1]["Properties"]["WorkGroupConfiguration"]["BytesScannedCutoffPerQuery"]
        for s in (dev, prod)
    }
    assert cutoffs == {
        e: dev.platform.environment(e).athena.bytes_scanned_cutoff for e in ("dev", "prod")
    }
    assert cutoffs["dev"] != cutoffs["prod"]


def test_query_results_go_to_athena_results_bucket_encrypted_with_lake_key(each_env):
    results = workgroup(each_env)[1]["Properties"]["WorkGroupConfiguration"]["ResultConfiguration"]
    assert resolve(each_env, results["OutputLocation"]) == (
        f"s3://{each_env.names.athena_results_bucket}/{layout.ATHENA_RESULTS_PREFIX}"
    )
    encryption = results["EncryptionConfiguration"]
    assert encryption["EncryptionOption"] == "SSE_KMS"
    assert encryption["KmsKey"]
    assert resolve(each_env, encryption["KmsKey"]) == lake_key(each_env)
    assert results["ExpectedBucketOwner"] == each_env.names.account


@pytest.mark.parametrize("env,destroy_data", VARIANTS)
def test_workgroup_recursive_delete_only_when_destroy_opted_in(synth_variant, env, destroy_data):
    synth = synth_variant(env, destroy_data)
    expected = destroy_opted_in(synth)
    assert expected == (env == "dev" and destroy_data)  # dev allows destroy, prod never
    assert workgroup(synth)[1]["Properties"]["RecursiveDeleteOption"] is expected


@pytest.mark.parametrize("env,destroy_data", VARIANTS)
def test_workgroup_is_retained_unless_destroy_opted_in(synth_variant, env, destroy_data):
    synth = synth_variant(env, destroy_data)
    _, resource = workgroup(synth)
    if destroy_opted_in(synth):
        assert resource.get("DeletionPolicy", "Delete") == "Delete"
    else:
        assert resource["DeletionPolicy"] == "Retain"
        assert resource["UpdateReplacePolicy"] == "Retain"


# ----------------------------------------------------------------------------- named queries


def test_every_named_query_runs_in_the_workgroup_on_the_curated_database(each_env):
    workgroup_lid, _ = workgroup(each_env)
    queries = each_env.resources("analytics", "AWS::Athena::NamedQuery")
    assert len(queries) == 2 * len(DATASETS)
    for lid, query in queries.items():
        assert query["Properties"]["WorkGroup"] == {"Ref": workgroup_lid}, lid
        assert query["Properties"]["Database"] == each_env.names.curated_database, lid


@pytest.mark.parametrize("ds", DATASETS)
def test_each_dataset_has_two_parseable_queries_over_its_curated_table(each_env, ds):
    queries = queries_of(each_env, ds)
    assert len(queries) == 2
    for query in queries:
        assert tables_of(query) == {(each_env.names.curated_database, each_env.names.table(ds))}


@pytest.mark.parametrize("ds", DATASETS)
def test_profile_query_measures_every_kept_column(each_env, ds):
    dataset = each_env.platform.dataset(ds)
    measures = {a for a in aliased(profile_query(each_env, ds)) if a.endswith(COLUMN_MEASURES)}
    assert measures == expected_column_measures(dataset)
    for dropped in (c.name for c in dataset.columns if c.drop):
        assert not any(m.startswith(f"{dropped}_") for m in measures), dropped


@pytest.mark.parametrize("ds", DATASETS)
def test_profile_query_measures_compute_what_their_names_say(each_env, ds):
    dataset = each_env.platform.dataset(ds)
    expressions = aliased(profile_query(each_env, ds))
    for column in dataset.kept_columns:
        null_rate = expressions[f"{column.name}_null_rate"]
        assert any(column_names(count) == {column.name} for count in null_rate.find_all(exp.Count))
        if column.is_numeric:
            for measure, function in (("min", exp.Min), ("avg", exp.Avg), ("max", exp.Max)):
                node = expressions[f"{column.name}_{measure}"]
                assert [column_names(f) for f in node.find_all(function)] == [{column.name}], (
                    column.name,
                    measure,
                )


@pytest.mark.parametrize("ds", DATASETS)
def test_profile_query_groups_by_day(each_env, ds):
    query = profile_query(each_env, ds)
    group = query.args.get("group")
    assert group is not None and column_names(group) == {"dt"}
    assert "dt" in column_names(query.args["where"])
