"""spec/platform.yaml's `delivery:` section: the opt-in CDK Pipelines pipeline (platform-wide,
not per environment). Where the source is (a repository behind a CodeConnections
connection, one branch), which account and region the pipeline lives in (a tooling account;
default: the first environment it deploys), which environments it deploys in order, and
which of them wait for a manual approval."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from dataplatform.spec.core import SpecProblems, check_keys
from dataplatform.spec.environments import ACCOUNT_PATTERN, REGION_PATTERN, Environment

DELIVERY_KEYS = (
    "enabled",
    "repository",
    "branch",
    "connection_arn",
    "account",
    "region",
    "environments",
    "manual_approval",
)
REPOSITORY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")
# A git branch name as CodePipeline's source takes it: no spaces, no `..`, no leading `-`.
BRANCH_PATTERN = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/-]+$")
# CodeStar Connections were renamed CodeConnections (2024); both ARN forms stay valid.
CONNECTION_ARN_PATTERN = re.compile(
    r"^arn:aws(-[a-z]+)*:(codestar-connections|codeconnections):[a-z]{2}(-gov)?-[a-z]+-\d:"
    r"\d{12}:connection/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
DEFAULT_ENVIRONMENTS = ("dev", "prod")
DEFAULT_MANUAL_APPROVAL = ("prod",)


@dataclass(frozen=True)
class Delivery:
    """The pipeline's settings. When enabled, repository and connection_arn are set, and
    account and region are resolved (given, or the first delivery environment's)."""

    enabled: bool = False
    repository: str | None = None  # "owner/name"
    branch: str = "main"
    connection_arn: str | None = None
    account: str | None = None  # the pipeline's (tooling) account
    region: str | None = None
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS  # deployed in this order
    manual_approval: tuple[str, ...] = DEFAULT_MANUAL_APPROVAL  # approved before deploy

    def needs_approval(self, env: str) -> bool:
        return env in self.manual_approval


def _names_list(
    raw: Mapping, key: str, default: tuple[str, ...], rel: str, problems: SpecProblems
) -> tuple[str, ...]:
    value = raw.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(
            rel, f"delivery.{key}", f"must be a list of environment names, like {list(default)}"
        )
        return ()
    duplicates = sorted({v for v in value if value.count(v) > 1})
    if duplicates:
        problems.add(rel, f"delivery.{key}", f"lists {', '.join(duplicates)} twice; list each once")
    return tuple(dict.fromkeys(value))


def parse_delivery(
    data: Any,
    environments: Mapping[str, Environment],
    rel: str,
    problems: SpecProblems,
    *,
    declared: Collection[str] | None = None,
) -> Delivery:
    """The `delivery:` section (absent: disabled). Shapes are checked always; what a
    pipeline needs (repository, connection, every deployed environment's account) only
    when it is enabled. `declared`: the environment names platform.yaml declares (default:
    those that parsed), so that an environment with a bad setting is reported once, for
    its setting, not again as unknown here."""
    declared = environments.keys() if declared is None else declared
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.add(rel, "delivery", "must be a mapping of settings (enabled, repository, ...)")
        return Delivery()
    check_keys(data, DELIVERY_KEYS, rel, "delivery.", problems, what="setting")

    def text(key: str, default: str | None = None) -> str | None:
        value = data.get(key, default)
        if value is not None and not isinstance(value, str):
            hint = ' (quote account ids in YAML: "012345678901")' if key == "account" else ""
            problems.add(rel, f"delivery.{key}", f"must be a string, not {value!r}{hint}")
            return None
        return value

    enabled = data.get("enabled", False)
    if not isinstance(enabled, bool):
        problems.add(rel, "delivery.enabled", f"must be true or false, not {enabled!r}")
        enabled = False
    repository, connection_arn = text("repository"), text("connection_arn")
    branch = text("branch", "main") or "main"
    account, region = text("account"), text("region")
    envs = _names_list(data, "environments", DEFAULT_ENVIRONMENTS, rel, problems)
    approvals = _names_list(data, "manual_approval", DEFAULT_MANUAL_APPROVAL, rel, problems)

    if repository is not None and not REPOSITORY_PATTERN.match(repository):
        problems.add(
            rel,
            "delivery.repository",
            f"{repository!r} is not a repository like owner/name (as the connection's "
            "provider spells it, e.g. GitHub's)",
        )
    if not BRANCH_PATTERN.match(branch):
        problems.add(rel, "delivery.branch", f"{branch!r} is not a branch name like main")
    if connection_arn is not None and not CONNECTION_ARN_PATTERN.match(connection_arn):
        problems.add(
            rel,
            "delivery.connection_arn",
            f"{connection_arn!r} is not a connection ARN like arn:aws:codeconnections:"
            "eu-west-1:111111111111:connection/<uuid> (or arn:aws:codestar-connections:...); "
            "create the connection in the console (Developer Tools > Connections) and copy its ARN",
        )
    if account is not None and not ACCOUNT_PATTERN.match(account):
        problems.add(
            rel, "delivery.account", f"{account!r} is not a 12-digit AWS account id (quote it)"
        )
    if region is not None and not REGION_PATTERN.match(region):
        problems.add(rel, "delivery.region", f"{region!r} is not an AWS region like eu-west-1")
    if "environments" in data and not envs and isinstance(data["environments"], list):
        problems.add(rel, "delivery.environments", "list at least one environment to deploy")
    for i, env in enumerate(envs):
        if env not in declared:
            problems.add(
                rel,
                f"delivery.environments[{i}]",
                f"unknown environment {env!r}; declared under `environments:`: "
                f"{', '.join(declared) or 'none'}",
            )
    for i, env in enumerate(approvals):
        if env not in envs:
            problems.add(
                rel,
                f"delivery.manual_approval[{i}]",
                f"{env!r} is not deployed by the pipeline; use some of "
                f"delivery.environments ({', '.join(envs)})",
            )

    first = environments.get(envs[0]) if envs else None
    if first is not None:
        account = account or first.account
        region = region or first.region
    delivery = Delivery(
        enabled=enabled,
        repository=repository,
        branch=branch,
        connection_arn=connection_arn,
        account=account,
        region=region,
        environments=envs or DEFAULT_ENVIRONMENTS,
        manual_approval=approvals,
    )
    if enabled:
        check_enabled(delivery, environments, rel, problems)
    return delivery


def check_enabled(
    delivery: Delivery, environments: Mapping[str, Environment], rel: str, problems: SpecProblems
) -> None:
    """What a pipeline needs: its source, and an explicit account for every environment it
    deploys (a cross-account pipeline cannot deploy to "the current credentials' account")."""
    if delivery.repository is None:
        problems.add(
            rel,
            "delivery.repository",
            'required when delivery is enabled: the source repository, "owner/name"',
        )
    if delivery.connection_arn is None:
        problems.add(
            rel,
            "delivery.connection_arn",
            "required when delivery is enabled: the ARN of a CodeConnections connection "
            "to the repository's provider (Developer Tools > Connections)",
        )
    for env in delivery.environments:
        if env in environments and environments[env].account is None:
            problems.add(
                rel,
                f"environments.{env}.account",
                "required when the pipeline deploys this environment (delivery.environments): "
                'a cross-account pipeline deploys to explicit accounts; set account: "<12 digits>"',
            )
