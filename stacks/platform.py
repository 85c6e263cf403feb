"""Builds the platform's stacks for one environment. app.py and the tests both call it,
so what is tested is what `cdk synth` produces. Reads like the architecture diagram."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Aspects, Aws, Stack, Stage, Tags
from aws_cdk import Environment as CdkEnvironment
from cdk_nag import AwsSolutionsChecks

from dataplatform.bundle import stage_job_code, stage_lambda
from dataplatform.governance import describe as describe_governance
from dataplatform.naming import Names
from dataplatform.paths import REPO_ROOT
from dataplatform.spec import Platform
from stacks.analytics import AnalyticsStack
from stacks.audit import AuditStack
from stacks.catalog import CatalogStack
from stacks.constructs.checkov import skip_cdk_provider_functions
from stacks.constructs.removal import DESTROY_CONTEXT_KEY, DataRemoval, context_flag
from stacks.emr import EmrStack
from stacks.governance import GovernanceStack
from stacks.ml import MlStack
from stacks.monitoring import MonitoringStack
from stacks.network import NetworkStack
from stacks.orchestration import OrchestrationStack
from stacks.serving import ServingStack
from stacks.storage import StorageStack
from stacks.streaming import StreamingStack

# Staged Lambda and job code bundles (ignored by git; rebuilt at every synth).
BUILD_DIR = REPO_ROOT / "build"


def cdk_json_context() -> dict:
    """The context of cdk.json (feature flags included), for Apps built outside the CLI
    (tests, `dp`), so that they synthesize exactly what `npx cdk synth` does."""
    return json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


@dataclass
class PlatformStacks:
    names: Names
    removal: DataRemoval
    storage: StorageStack
    streaming: StreamingStack
    catalog: CatalogStack
    analytics: AnalyticsStack
    audit: AuditStack
    network: NetworkStack
    emr: EmrStack
    monitoring: MonitoringStack
    ml: MlStack
    orchestration: OrchestrationStack
    serving: ServingStack
    governance: GovernanceStack

    @property
    def all(self) -> list[Stack]:
        return [
            self.storage,
            self.streaming,
            self.catalog,
            self.analytics,
            self.audit,
            self.network,
            self.emr,
            self.monitoring,
            self.ml,
            self.orchestration,
            self.serving,
            self.governance,
        ]


def build_platform(
    app: Stage,
    platform: Platform,
    *,
    env_name: str | None = None,
    account: str | None = None,
    destroy_data: bool | None = None,
) -> PlatformStacks:
    """Stacks for `env_name` (else the `env` context, else dev); cdk-nag checks them all.
    `app` is any Stage: the App itself (`cdk deploy --all`) or a pipeline's stage, which
    deploys the same stacks (stacks/delivery.py)."""
    env_name = env_name or app.node.try_get_context("env") or "dev"
    settings = platform.environment(env_name)
    if destroy_data is None:
        destroy_data = context_flag(app.node.try_get_context(DESTROY_CONTEXT_KEY))
    account = account or settings.resolved_account()
    # Without an account the stacks are environment-agnostic: names carry ${AWS::AccountId}.
    names = Names(
        project=platform.project,
        env=settings.name,
        account=account or Aws.ACCOUNT_ID,
        region=settings.region,
    )
    cdk_env = CdkEnvironment(account=account, region=settings.region)
    removal = DataRemoval.decide(settings, destroy_data)

    storage = StorageStack(
        app,
        "Storage",
        stack_name=names.stack("storage"),
        env=cdk_env,
        description=f"{names.prefix}: lake KMS key and buckets",
        names=names,
        settings=settings,
        removal=removal,
    )

    lake = storage.lake
    streaming = StreamingStack(
        app,
        "Streaming",
        stack_name=names.stack("streaming"),
        env=cdk_env,
        description=f"{names.prefix}: Kinesis streams and Firehose delivery into the raw zone",
        names=names,
        settings=settings,
        lake=lake,
        datasets=platform.stream_datasets,
        removal=removal,
        transform_code_dir=stage_lambda("firehose_transform", platform, BUILD_DIR),
    )

    catalog = CatalogStack(
        app,
        "Catalog",
        stack_name=names.stack("catalog"),
        env=cdk_env,
        description=f"{names.prefix}: Glue databases, tables, crawlers and curate jobs",
        names=names,
        settings=settings,
        lake=lake,
        datasets=platform.datasets,
        job_code_dir=stage_job_code(platform, BUILD_DIR),
    )

    analytics = AnalyticsStack(
        app,
        "Analytics",
        stack_name=names.stack("analytics"),
        env=cdk_env,
        description=f"{names.prefix}: Athena workgroup and named queries",
        names=names,
        settings=settings,
        lake=lake,
        datasets=platform.datasets,
        removal=removal,
    )
    analytics.node.add_dependency(catalog)  # named queries refer to the curated tables

    audit = AuditStack(
        app,
        "Audit",
        stack_name=names.stack("audit"),
        env=cdk_env,
        description=f"{names.prefix}: CloudTrail trail of management events and the lake's S3 "
        "data events, its Object Lock bucket, log group, Glue table and named queries",
        names=names,
        settings=settings,
        lake=lake,
        datasets=platform.datasets,
        workgroup=analytics.workgroup,
        removal=removal,
    )
    # The catalog's encryption settings encrypt the audit table when it is created.
    audit.node.add_dependency(catalog)

    network = NetworkStack(
        app,
        "Network",
        stack_name=names.stack("network"),
        env=cdk_env,
        description=f"{names.prefix}: VPC for EMR and SageMaker, S3 endpoint, flow logs",
        names=names,
        settings=settings,
        lake=lake,
        removal=removal,
    )

    emr = EmrStack(
        app,
        "Emr",
        stack_name=names.stack("emr"),
        env=cdk_env,
        description=f"{names.prefix}: EMR security configuration, roles and cluster definition",
        names=names,
        settings=settings,
        lake=lake,
        network=network,
        feature_tables=tuple(f.name for f in platform.features),
        curated_tables=tuple(d.name for d in platform.datasets),
    )
    emr.node.add_dependency(catalog)  # steps read code/ deployed by the catalog stack's JobCode

    monitoring = MonitoringStack(
        app,
        "Monitoring",
        stack_name=names.stack("monitoring"),
        env=cdk_env,
        description=f"{names.prefix}: alerts topic, alarms and the pipeline dashboard",
        names=names,
        settings=settings,
        datasets=platform.datasets,
        removal=removal,
        models=platform.models,
    )

    ml = MlStack(
        app,
        "Ml",
        stack_name=names.stack("ml"),
        env=cdk_env,
        description=f"{names.prefix}: SageMaker execution role, model package groups, "
        "training definitions",
        names=names,
        settings=settings,
        lake=lake,
        network=network,
        models=platform.models,
    )
    ml.node.add_dependency(catalog)  # training reads its source from code/ (JobCode)

    orchestration = OrchestrationStack(
        app,
        "Orchestration",
        stack_name=names.stack("orchestration"),
        env=cdk_env,
        description=f"{names.prefix}: the ML pipeline state machine and its quality gate",
        names=names,
        settings=settings,
        platform=platform,
        lake=lake,
        emr=emr,
        ml=ml,
        alerts=monitoring.topic,
        alerts_key=monitoring.key,
        removal=removal,
        gate_code_dir=stage_lambda("quality_gate", platform, BUILD_DIR),
    )
    orchestration.node.add_dependency(catalog)  # it starts the curate jobs by name

    serving = ServingStack(
        app,
        "Serving",
        stack_name=names.stack("serving"),
        env=cdk_env,
        description=f"{names.prefix}: real-time scoring of the served models (stream scorers, "
        "online features and scores, endpoints rolled on approval, the models' events)",
        names=names,
        settings=settings,
        lake=lake,
        network=network,
        streams={ds: ingestion.stream for ds, ingestion in streaming.ingestion.items()},
        alerts=monitoring.topic,
        sagemaker_role=ml.role,
        models=platform.models,
        removal=removal,
        scorer_code_dir=stage_lambda("stream_scorer", platform, BUILD_DIR),
        deployer_code_dir=stage_lambda("endpoint_deployer", platform, BUILD_DIR),
    )
    serving.node.add_dependency(ml)  # the approval rules watch the ML stack's package groups

    governance = GovernanceStack(
        app,
        "Governance",
        stack_name=names.stack("governance"),
        env=cdk_env,
        description=f"{names.prefix}: persona roles and Lake Formation (registered locations "
        "in hybrid access mode, LF-tags on the catalog, tag-based grants, the jobs' grants)",
        names=names,
        platform=platform,
        governance=describe_governance(platform, names),
        lake=lake,
        streams={ds: ingestion.stream for ds, ingestion in streaming.ingestion.items()},
        workgroup=analytics.workgroup.name,
        ml_pipeline_arn=orchestration.state_machine.state_machine_arn,
        job_roles={
            **{names.crawler_role(ds): t.crawler_role for ds, t in catalog.tables.items()},
            **{names.curate_job_role(ds): job.role for ds, job in catalog.curate_jobs.items()},
            names.emr_instance_role: emr.security.instance_role,
            **{names.maintenance_role(ds): m.role for ds, m in analytics.maintenance.items()},
        },
    )
    governance.node.add_dependency(catalog)  # it tags the catalog's databases and tables
    governance.node.add_dependency(analytics)  # the personas query in its workgroup

    stacks = PlatformStacks(
        names=names,
        removal=removal,
        storage=storage,
        streaming=streaming,
        catalog=catalog,
        analytics=analytics,
        audit=audit,
        network=network,
        emr=emr,
        monitoring=monitoring,
        ml=ml,
        orchestration=orchestration,
        serving=serving,
        governance=governance,
    )
    for stack in stacks.all:
        for key, value in names.tags.items():
            Tags.of(stack).add(key, value)
        skip_cdk_provider_functions(stack)
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))  # on this Stage's stacks only
    return stacks
