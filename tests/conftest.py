"""Session-wide fixtures: one local platform (a moto server and its long-lived Spark
driver) for every test module that runs jobs on it, emptied for each module."""

from __future__ import annotations

import pytest

from dataplatform.runtime.local import server
from tests.contracts.api_model import enforce_in_every_client

# `make test` runs the suite on two pytest-xdist workers. The modules that use one of these
# costly session fixtures run together on one worker, so that each fixture is still built
# once per run; every other module is a unit of its own. xdist's controller schedules by
# test id before anything is collected, so the modules are named here, and the collection
# check below fails the run when a module uses a fixture its group does not list.
# The groups are the costliest work, listed first so that the first two start at once.
WORKER_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "local-platform": (
        "local_home",  # a moto server and its warm Spark driver
        (
            "tests/e2e/test_local_pipeline.py",
            "tests/local/test_aws_clients.py",
            "tests/local/test_glue_iceberg_tables.py",
            "tests/cli/test_no_tracebacks.py",
            "tests/local/test_emr_local.py",
            "tests/local/test_local_crawl_and_job.py",
            "tests/local/test_messy_ingest.py",
            "tests/local/test_sagemaker_endpoint.py",
            "tests/local/test_server_and_provision.py",
            "tests/local/test_state_machine_local.py",
            "tests/test_python_api.py",
        ),
    ),
    "spark-session": (
        "spark",  # the job tests' SparkSession
        (
            "tests/jobs/test_curate_iceberg.py",
            "tests/jobs/test_curate_job.py",
            "tests/jobs/test_curate_transform.py",
            "tests/jobs/test_demo_models.py",
            "tests/jobs/test_features.py",
            "tests/jobs/test_frequent_itemsets.py",
            "tests/jobs/test_local_commit_protocol.py",
        ),
    ),
    "cdk-synth": (
        "synth_variant",  # one CDK synth per environment
        (
            "tests/infra/test_nag_and_lint.py",
            "tests/infra/test_checkov.py",
            "tests/infra/test_analytics.py",
            "tests/infra/test_audit.py",
            "tests/infra/test_catalog.py",
            "tests/infra/test_contracts.py",
            "tests/infra/test_emr.py",
            "tests/infra/test_governance.py",
            "tests/infra/test_iceberg.py",
            "tests/infra/test_ml.py",
            "tests/infra/test_monitoring.py",
            "tests/infra/test_network.py",
            "tests/infra/test_orchestration.py",
            "tests/infra/test_serving.py",
            "tests/infra/test_storage.py",
            "tests/infra/test_streaming.py",
            "tests/local/test_provision_parity.py",
        ),
    ),
}
GROUP_OF_MODULE = {
    module: group for group, (_, modules) in WORKER_GROUPS.items() for module in modules
}


def _module(nodeid: str) -> str:
    return nodeid.split("::")[0]


def pytest_collection_modifyitems(config, items):
    unlisted = sorted(
        {
            f"{_module(item.nodeid)} uses {fixture}: add it to WORKER_GROUPS[{group!r}]"
            for item in items
            for group, (fixture, _) in WORKER_GROUPS.items()
            if fixture in item.fixturenames and _module(item.nodeid) not in GROUP_OF_MODULE
        }
    )
    if unlisted:
        raise pytest.UsageError("tests/conftest.py: " + "; ".join(unlisted))
    # the groups first, in their order; a stable sort keeps collection order within each
    rank = {group: i for i, group in enumerate(WORKER_GROUPS)}
    items.sort(key=lambda item: rank.get(GROUP_OF_MODULE.get(_module(item.nodeid), ""), len(rank)))


@pytest.hookimpl(optionalhook=True)  # a hook of xdist's: `-p no:xdist` still runs the suite
def pytest_xdist_make_scheduler(config, log):
    """Units of work for the xdist workers: a group of WORKER_GROUPS, or one module."""
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return GROUP_OF_MODULE.get(_module(nodeid), _module(nodeid))

    config.option.loadscopereorder = False  # keep the collection order: the groups first
    return SharedFixtureScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def requests_meet_their_api_models():
    """Every boto3 request any test makes (the AWS target's, the local platform's, the
    jobs') is checked against its botocore model, patterns and lengths included: botocore
    alone checks only names, types and required members, and moto accepts the rest."""
    enforce_in_every_client()


@pytest.fixture(scope="session")
def local_home(tmp_path_factory):
    """The state folder of the session's local platform, running."""
    home = tmp_path_factory.mktemp("dp-session")
    server.up(home)
    try:
        yield home
    finally:
        server.down(home)


@pytest.fixture(scope="module")
def empty_platform(local_home):
    """The session's platform, emptied for this module (provision it before use): moto
    reset, Firehose checkpoints gone; the Spark driver stays warm."""
    return local_home, server.reset(local_home)
