"""spec/platform.yaml: the project and its environments, each one's typed settings:
`defaults` deep-merged with the environment's overrides, every setting's type read from the
settings dataclasses."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dataplatform.spec.core import SpecProblems, check_keys

PROJECT_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,11}$")
ENV_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,7}$")
ACCOUNT_PATTERN = re.compile(r"^\d{12}$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
INSTANCE_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")

KINESIS_CAPACITY_MODES = ("on_demand", "provisioned")
GLUE_WORKER_TYPES = ("G.025X", "G.1X", "G.2X", "G.4X", "G.8X")
ARCHIVE_STORAGE_CLASSES = ("GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")
# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# Firehose dynamic partitioning refuses buffers below 64 MiB.
FIREHOSE_MIN_BUFFER_MIB = 64
FLOW_LOG_TRAFFIC = ("ALL", "ACCEPT", "REJECT")
# EMR 7.x ships Spark 3.5, the version the steps are written and tested against locally.
EMR_RELEASE_PATTERN = re.compile(r"^emr-7\.\d+\.\d+$")
EMR_APPLICATIONS = ("Spark", "Hadoop", "Hive", "Livy", "JupyterEnterpriseGateway")
EMR_REQUIRED_APPLICATIONS = ("Spark", "Hadoop")
OBJECT_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
# `all`: the trail records the lake's object reads and writes; `write_only`: writes and
# deletes only (reads are most of a lake's data events, and every event is billed).
AUDIT_DATA_EVENTS = ("all", "write_only")
# S3 Object Lock's longest default retention (100 years).
OBJECT_LOCK_MAX_DAYS = 36500


@dataclass(frozen=True)
class LifecycleSettings:
    raw_infrequent_access_days: int
    raw_archive_days: int
    raw_archive_storage_class: str
    noncurrent_version_expiration_days: int
    athena_results_expiration_days: int


@dataclass(frozen=True)
class ObjectLockSettings:
    enabled: bool
    retention_days: int


@dataclass(frozen=True)
class KinesisSettings:
    capacity_mode: str
    shard_count: int
    retention_hours: int


@dataclass(frozen=True)
class FirehoseSettings:
    buffer_mib: int
    buffer_seconds: int
    transform_reserved_concurrency: int  # per dataset's transform Lambda


@dataclass(frozen=True)
class GlueSettings:
    worker_type: str
    number_of_workers: int
    timeout_minutes: int
    crawler_schedule: str | None


@dataclass(frozen=True)
class AthenaSettings:
    bytes_scanned_cutoff: int


@dataclass(frozen=True)
class NetworkSettings:
    cidr: str
    max_azs: int
    nat_gateways: int
    flow_logs_traffic: str


@dataclass(frozen=True)
class EmrSettings:
    release_label: str
    applications: tuple[str, ...]
    master_instance_type: str
    core_instance_type: str
    core_instance_count: int
    core_ebs_gib: int
    task_instance_type: str
    task_instance_count: int
    # EMR managed scaling limits, in core + task instances (the master is never scaled).
    min_capacity: int
    max_capacity: int
    max_on_demand_capacity: int
    idle_timeout_minutes: int
    long_running: bool
    in_transit_encryption: bool


@dataclass(frozen=True)
class SageMakerSettings:
    instance_type: str
    volume_gib: int
    max_runtime_minutes: int
    use_spot_instances: bool
    max_wait_minutes: int  # spot: runtime plus time waiting for capacity
    sklearn_framework_version: str  # the SageMaker scikit-learn container, e.g. 1.2-1


@dataclass(frozen=True)
class PipelineSettings:
    schedule: str | None  # EventBridge cron for the ML pipeline; null = on demand


@dataclass(frozen=True)
class AuditSettings:
    """The CloudTrail trail of the lake (stacks/audit.py)."""

    log_retention_days: int  # the trail bucket's Object Lock default retention, then expiry
    object_lock_mode: str  # GOVERNANCE (removable with a bypass permission) | COMPLIANCE
    cloudwatch_logs_retention_days: int  # the trail's CloudWatch Logs copy
    data_events: str  # all | write_only: which S3 data events on the lake's buckets


@dataclass(frozen=True)
class Environment:
    """One deployment environment's typed settings. Code branches on these, never on `name`."""

    name: str
    account: str | None
    region: str
    allow_destroy: bool
    log_retention_days: int
    lifecycle: LifecycleSettings
    object_lock: ObjectLockSettings
    kinesis: KinesisSettings
    firehose: FirehoseSettings
    glue: GlueSettings
    athena: AthenaSettings
    network: NetworkSettings
    emr: EmrSettings
    sagemaker: SageMakerSettings
    pipeline: PipelineSettings
    audit: AuditSettings
    alarm_email: str | None

    def resolved_account(self) -> str | None:
        """The spec's account, else the CDK CLI's default account, else None (env-agnostic)."""
        return self.account or os.environ.get("CDK_DEFAULT_ACCOUNT") or None


# --- environments: `defaults` deep-merged with each environment's overrides.
# The type each setting accepts is read from its annotation in the dataclasses above: a
# field whose type is a settings dataclass is a section (a mapping of settings), any other
# (but `name`, the environment's key) a scalar.


def _accepted(hint: Any) -> Any:
    """What `_typed` checks a YAML value against for a setting annotated `hint`: the type, a
    tuple of types for `X | None`, or list for a tuple (YAML lists become tuples)."""
    if typing.get_origin(hint) is tuple:
        return list
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return hint


def _setting_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_ENVIRONMENT_FIELDS = {
    name: hint for name, hint in _setting_types(Environment).items() if name != "name"
}
# section -> (its settings dataclass, {setting: accepted type})
ENV_SECTIONS = {
    name: (hint, {key: _accepted(h) for key, h in _setting_types(hint).items()})
    for name, hint in _ENVIRONMENT_FIELDS.items()
    # a class: is_dataclass alone is also true of a dataclass instance, which a hint never is
    if isinstance(hint, type) and dataclasses.is_dataclass(hint)
}
# setting -> accepted type, for the settings directly under an environment
ENV_SCALARS = {
    name: _accepted(hint)
    for name, hint in _ENVIRONMENT_FIELDS.items()
    if not dataclasses.is_dataclass(hint)
}


def _merge(defaults: Mapping, overrides: Mapping) -> dict:
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _typed(value: Any, expected: Any) -> bool:
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    if isinstance(expected, tuple):
        return " or ".join("null" if t is type(None) else t.__name__ for t in expected)
    return {"str": "a string", "int": "an integer", "bool": "true or false", "list": "a list"}[
        expected.__name__
    ]


def _parse_environment(
    name: str, raw: dict, rel: str, problems: SpecProblems
) -> Environment | None:
    where = f"environments.{name}"
    if not ENV_NAME_PATTERN.match(name):
        problems.add(
            rel,
            where,
            f"invalid environment name {name!r}; use up to 8 lower case "
            "letters and digits (it becomes part of every resource name)",
        )
    allowed = tuple(ENV_SCALARS) + tuple(ENV_SECTIONS)
    check_keys(raw, allowed, rel, f"{where}.", problems, what="setting")
    values: dict[str, Any] = {}
    ok = True
    for key, expected in ENV_SCALARS.items():
        if key not in raw:
            if isinstance(expected, tuple) and type(None) in expected:  # optional: X | None
                values[key] = None
                continue
            problems.add(rel, f"{where}.{key}", "missing; set it here or under `defaults:`")
            ok = False
            continue
        if not _typed(raw[key], expected):
            hint = ' (quote account ids in YAML: "012345678901")' if key == "account" else ""
            problems.add(
                rel, f"{where}.{key}", f"must be {_type_name(expected)}, not {raw[key]!r}{hint}"
            )
            ok = False
        values[key] = raw[key]
    for section, (cls, fields) in ENV_SECTIONS.items():
        sub = raw.get(section)
        if not isinstance(sub, dict):
            problems.add(
                rel,
                f"{where}.{section}",
                "missing or not a mapping; set it under `defaults:` or the environment",
            )
            ok = False
            continue
        check_keys(sub, tuple(fields), rel, f"{where}.{section}.", problems, what="setting")
        kwargs = {}
        for key, expected in fields.items():
            if key not in sub:
                problems.add(
                    rel, f"{where}.{section}.{key}", "missing; set it here or under `defaults:`"
                )
                ok = False
            elif not _typed(sub[key], expected):
                problems.add(
                    rel,
                    f"{where}.{section}.{key}",
                    f"must be {_type_name(expected)}, not {sub[key]!r}",
                )
                ok = False
            else:
                # Lists become tuples: the settings are frozen and hashable.
                kwargs[key] = tuple(sub[key]) if isinstance(sub[key], list) else sub[key]
        if ok:
            values[section] = cls(**kwargs)
    if not ok:
        return None

    env = Environment(name=name, **values)
    account, region = env.account, env.region
    if account is not None and not ACCOUNT_PATTERN.match(account):
        problems.add(
            rel,
            f"{where}.account",
            f"{account!r} is not a 12-digit AWS account id "
            "(quote it in YAML); or remove it to use CDK_DEFAULT_ACCOUNT",
        )
    if not REGION_PATTERN.match(region):
        problems.add(rel, f"{where}.region", f"{region!r} is not an AWS region like eu-west-1")
    if env.log_retention_days not in LOG_RETENTION_DAYS:
        problems.add(
            rel,
            f"{where}.log_retention_days",
            f"{env.log_retention_days} is not a "
            f"CloudWatch Logs retention; use one of {LOG_RETENTION_DAYS}",
        )
    lc = env.lifecycle
    if lc.raw_archive_storage_class not in ARCHIVE_STORAGE_CLASSES:
        problems.add(
            rel,
            f"{where}.lifecycle.raw_archive_storage_class",
            f"use one of {', '.join(ARCHIVE_STORAGE_CLASSES)}",
        )
    if lc.raw_infrequent_access_days < 30:
        problems.add(
            rel,
            f"{where}.lifecycle.raw_infrequent_access_days",
            "S3 moves objects to STANDARD_IA after 30 days at the earliest; use >= 30",
        )
    if lc.raw_archive_days <= lc.raw_infrequent_access_days:
        problems.add(
            rel,
            f"{where}.lifecycle.raw_archive_days",
            "must be later than raw_infrequent_access_days",
        )
    for key in ("noncurrent_version_expiration_days", "athena_results_expiration_days"):
        if getattr(lc, key) < 1:
            problems.add(rel, f"{where}.lifecycle.{key}", "must be at least 1 day")
    if env.object_lock.enabled and env.object_lock.retention_days < 1:
        problems.add(rel, f"{where}.object_lock.retention_days", "must be at least 1 day")
    ks = env.kinesis
    if ks.capacity_mode not in KINESIS_CAPACITY_MODES:
        problems.add(
            rel, f"{where}.kinesis.capacity_mode", f"use one of {', '.join(KINESIS_CAPACITY_MODES)}"
        )
    if ks.shard_count < 1:
        problems.add(rel, f"{where}.kinesis.shard_count", "must be at least 1")
    if not 24 <= ks.retention_hours <= 8760:
        problems.add(rel, f"{where}.kinesis.retention_hours", "Kinesis keeps data 24 to 8760 hours")
    fh = env.firehose
    if not FIREHOSE_MIN_BUFFER_MIB <= fh.buffer_mib <= 128:
        problems.add(
            rel,
            f"{where}.firehose.buffer_mib",
            f"Firehose dynamic partitioning needs a buffer of {FIREHOSE_MIN_BUFFER_MIB} to 128 MiB",
        )
    if not 60 <= fh.buffer_seconds <= 900:
        problems.add(rel, f"{where}.firehose.buffer_seconds", "Firehose buffers 60 to 900 seconds")
    if not 1 <= fh.transform_reserved_concurrency <= 1000:
        problems.add(
            rel,
            f"{where}.firehose.transform_reserved_concurrency",
            "reserve 1 to 1000 "
            "concurrent executions (the account keeps at least 10 unreserved: on a new "
            "account with a quota of 10, raise the quota first)",
        )
    gl = env.glue
    if gl.worker_type not in GLUE_WORKER_TYPES:
        problems.add(rel, f"{where}.glue.worker_type", f"use one of {', '.join(GLUE_WORKER_TYPES)}")
    if gl.number_of_workers < 2:
        problems.add(rel, f"{where}.glue.number_of_workers", "Glue Spark jobs need at least 2")
    if not 1 <= gl.timeout_minutes <= 2880:
        problems.add(rel, f"{where}.glue.timeout_minutes", "must be 1 to 2880 minutes")
    if gl.crawler_schedule is not None and not re.match(r"^cron\(.+\)$", gl.crawler_schedule):
        problems.add(
            rel,
            f"{where}.glue.crawler_schedule",
            "use a Glue cron expression like cron(15 * * * ? *), or null for on demand",
        )
    if env.athena.bytes_scanned_cutoff < 10 * 1024 * 1024:
        problems.add(
            rel,
            f"{where}.athena.bytes_scanned_cutoff",
            "Athena's smallest cutoff is 10 MB (10485760 bytes)",
        )
    _check_network(env.network, f"{where}.network", rel, problems)
    _check_emr(env.emr, f"{where}.emr", rel, problems)
    _check_sagemaker(env.sagemaker, f"{where}.sagemaker", rel, problems)
    _check_audit(env.audit, f"{where}.audit", rel, problems)
    if env.pipeline.schedule is not None and not re.match(r"^cron\(.+\)$", env.pipeline.schedule):
        problems.add(
            rel,
            f"{where}.pipeline.schedule",
            "use an EventBridge cron expression like "
            "cron(0 3 * * ? *), or null to run the pipeline on demand",
        )
    if env.alarm_email is not None and not EMAIL_PATTERN.match(env.alarm_email):
        problems.add(rel, f"{where}.alarm_email", f"{env.alarm_email!r} is not an e-mail address")
    return env


def _check_network(net: NetworkSettings, where: str, rel: str, problems: SpecProblems) -> None:
    try:
        cidr = ipaddress.ip_network(net.cidr)
    except ValueError:
        problems.add(rel, f"{where}.cidr", f"{net.cidr!r} is not a CIDR block like 10.40.0.0/16")
    else:
        if cidr.version != 4 or not 16 <= cidr.prefixlen <= 20 or not cidr.is_private:
            problems.add(
                rel,
                f"{where}.cidr",
                f"{net.cidr!r}: use a private IPv4 block from /16 "
                "to /20 (each AZ gets a public /24 and a private /22 subnet)",
            )
    if not 2 <= net.max_azs <= 3:
        problems.add(rel, f"{where}.max_azs", "use 2 or 3 availability zones")
    if not 1 <= net.nat_gateways <= net.max_azs:
        problems.add(
            rel,
            f"{where}.nat_gateways",
            f"use 1 (cheaper, one AZ's egress) to "
            f"max_azs={net.max_azs} (one per AZ, resilient); EMR in private subnets "
            "needs at least one",
        )
    if net.flow_logs_traffic not in FLOW_LOG_TRAFFIC:
        problems.add(rel, f"{where}.flow_logs_traffic", f"use one of {', '.join(FLOW_LOG_TRAFFIC)}")


def _check_emr(emr: EmrSettings, where: str, rel: str, problems: SpecProblems) -> None:
    if not EMR_RELEASE_PATTERN.match(emr.release_label):
        problems.add(
            rel,
            f"{where}.release_label",
            f"{emr.release_label!r}: use an EMR 7.x "
            "release like emr-7.5.0 (Spark 3.5, the version the steps are tested with)",
        )
    unknown = [a for a in emr.applications if a not in EMR_APPLICATIONS]
    if unknown:
        problems.add(
            rel,
            f"{where}.applications",
            f"unknown {', '.join(map(str, unknown))}; use some of {', '.join(EMR_APPLICATIONS)}",
        )
    missing = [a for a in EMR_REQUIRED_APPLICATIONS if a not in emr.applications]
    if missing:
        problems.add(
            rel,
            f"{where}.applications",
            f"add {', '.join(missing)}: the steps are spark-submit jobs",
        )
    for key in ("master_instance_type", "core_instance_type", "task_instance_type"):
        if not INSTANCE_TYPE_PATTERN.match(getattr(emr, key)):
            problems.add(
                rel,
                f"{where}.{key}",
                f"{getattr(emr, key)!r} is not an EC2 instance type like m5.xlarge",
            )
    if emr.core_instance_count < 1:
        problems.add(rel, f"{where}.core_instance_count", "HDFS and YARN need at least 1 core node")
    if emr.task_instance_count < 0:
        problems.add(rel, f"{where}.task_instance_count", "must be 0 or more")
    if not 16 <= emr.core_ebs_gib <= 16384:
        problems.add(rel, f"{where}.core_ebs_gib", "gp3 volumes are 16 to 16384 GiB here")
    # Managed scaling limits count core and task nodes; the master is never scaled.
    initial = emr.core_instance_count + emr.task_instance_count
    if emr.min_capacity < emr.core_instance_count:
        problems.add(
            rel,
            f"{where}.min_capacity",
            f"must cover the core nodes (>= core_instance_count={emr.core_instance_count})",
        )
    if emr.max_capacity < max(initial, emr.min_capacity):
        problems.add(
            rel,
            f"{where}.max_capacity",
            f"must be at least the initial "
            f"{initial} nodes ({emr.core_instance_count} core + "
            f"{emr.task_instance_count} task) and min_capacity",
        )
    if not emr.min_capacity <= emr.max_on_demand_capacity <= emr.max_capacity:
        problems.add(
            rel,
            f"{where}.max_on_demand_capacity",
            "must be between min_capacity and "
            "max_capacity (the rest is scaled with spot task nodes)",
        )
    if not 1 <= emr.idle_timeout_minutes <= 7 * 24 * 60:
        problems.add(
            rel,
            f"{where}.idle_timeout_minutes",
            "EMR auto-termination accepts 1 minute to 7 days (10080)",
        )


def _check_sagemaker(sm: SageMakerSettings, where: str, rel: str, problems: SpecProblems) -> None:
    if not re.match(r"^ml\.[a-z0-9]+\.[a-z0-9]+$", sm.instance_type):
        problems.add(
            rel,
            f"{where}.instance_type",
            f"{sm.instance_type!r} is not a SageMaker instance type like ml.m5.large",
        )
    if not 1 <= sm.volume_gib <= 16384:
        problems.add(rel, f"{where}.volume_gib", "must be 1 to 16384 GiB")
    if not 1 <= sm.max_runtime_minutes <= 28 * 24 * 60:
        problems.add(rel, f"{where}.max_runtime_minutes", "SageMaker allows 1 minute to 28 days")
    if sm.use_spot_instances and sm.max_wait_minutes < sm.max_runtime_minutes:
        problems.add(
            rel,
            f"{where}.max_wait_minutes",
            "managed spot training needs max_wait_minutes "
            f">= max_runtime_minutes ({sm.max_runtime_minutes})",
        )
    if not re.match(r"^\d+\.\d+-\d+$", sm.sklearn_framework_version):
        problems.add(
            rel,
            f"{where}.sklearn_framework_version",
            "use a SageMaker scikit-learn container version like 1.2-1",
        )


def _check_audit(audit: AuditSettings, where: str, rel: str, problems: SpecProblems) -> None:
    if not 1 <= audit.log_retention_days <= OBJECT_LOCK_MAX_DAYS:
        problems.add(
            rel,
            f"{where}.log_retention_days",
            f"S3 Object Lock retains 1 to {OBJECT_LOCK_MAX_DAYS} days; "
            "use e.g. 90 (dev) or 2557 (seven years)",
        )
    if audit.object_lock_mode not in OBJECT_LOCK_MODES:
        problems.add(
            rel,
            f"{where}.object_lock_mode",
            f"use one of {', '.join(OBJECT_LOCK_MODES)} (COMPLIANCE: nobody, not even the "
            "account root, can delete a log before its retention ends)",
        )
    if audit.cloudwatch_logs_retention_days not in LOG_RETENTION_DAYS:
        problems.add(
            rel,
            f"{where}.cloudwatch_logs_retention_days",
            f"{audit.cloudwatch_logs_retention_days} is not a CloudWatch Logs retention; "
            f"use one of {LOG_RETENTION_DAYS}",
        )
    if audit.data_events not in AUDIT_DATA_EVENTS:
        problems.add(
            rel,
            f"{where}.data_events",
            f"use one of {', '.join(AUDIT_DATA_EVENTS)} (write_only records no object reads, "
            "so the PII-read query finds nothing)",
        )


PLATFORM_KEYS = ("project", "description", "defaults", "environments", "delivery")


def parse_platform(data: dict, rel: str, problems: SpecProblems) -> tuple[str, str, dict]:
    check_keys(data, PLATFORM_KEYS, rel, "", problems)
    project = data.get("project")
    if not isinstance(project, str) or not PROJECT_PATTERN.match(project):
        problems.add(
            rel,
            "project",
            f"invalid project name {project!r}; use 2-12 lower case "
            "letters, digits or '-' starting with a letter (it prefixes bucket names)",
        )
        project = str(project)
    defaults = data.get("defaults", {}) or {}
    if not isinstance(defaults, dict):
        problems.add(rel, "defaults", "must be a mapping of settings")
        defaults = {}
    envs_raw = data.get("environments")
    environments: dict[str, Environment] = {}
    if not isinstance(envs_raw, dict) or not envs_raw:
        problems.add(rel, "environments", "declare at least one environment, e.g. dev and prod")
        envs_raw = {}
    for env_name, overrides in envs_raw.items():
        if not isinstance(overrides, dict):
            overrides = {}
        env = _parse_environment(str(env_name), _merge(defaults, overrides), rel, problems)
        if env is not None:
            environments[str(env_name)] = env
    for env in environments.values():
        # The longest name the platform derives: the athena-results bucket (S3 allows 63).
        longest = f"{project}-{env.name}-athena-results-123456789012-{env.region}"
        if len(longest) > 63:
            problems.add(
                rel,
                f"environments.{env.name}",
                f"bucket names such as {longest!r} "
                f"would be {len(longest)} characters (S3 allows 63); shorten the "
                "project or environment name",
            )
    return project, str(data.get("description", "")).strip(), environments
