"""Session-wide fixtures: one local platform (a moto server and its long-lived Spark
driver) for every test module that runs jobs on it, emptied for each module."""

from __future__ import annotations

import pytest

from dataplatform.runtime.local import server
from tests.contracts.api_model import enforce_in_every_client


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
