"""Every physical name of the platform, derived from project, environment, account
and region. The CDK stacks, the `dp` CLI and the local platform all call this module,
so a deployed platform and the embedded one cannot drift apart.

`account` may be a CDK token (an environment-agnostic synth); names then stay tokens
and the length checks wait for deploy time, when CloudFormation resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataplatform.spec import Environment, Platform

# The lake's buckets, by zone. access-logs receives S3 server access logs of the others.
BUCKET_ZONES = (
    "raw",
    "curated",
    "features",
    "models",
    "athena-results",
    "artifacts",
    "access-logs",
)
# Glue databases, one per queryable zone.
DATABASE_ZONES = ("raw", "curated", "features")

S3_BUCKET_MAX = 63
IAM_ROLE_MAX = 64
# Lambda function names and Firehose delivery stream names are limited to 64 characters.
SERVICE_NAME_MAX = 64

# The tag a transient EMR cluster is created with (its name as value): the pipeline role may
# act only on clusters that carry it, and create only clusters that do. Here, not in the
# stacks, because `dp emr run` must leave it off the clusters it starts (runtime/aws/emr.py).
TRANSIENT_CLUSTER_TAG = "dataplatform:cluster"


def pascal_case(name: str) -> str:
    """`telecom_events` -> `TelecomEvents`: the construct IDs and state names built from spec
    names (datasets, tables, models, zones) by the stacks and the local pipeline."""
    return "".join(part.capitalize() for part in name.split("_"))


def _is_token(value: str) -> bool:
    return "${Token[" in value or "#{" in value


def _limited(name: str, limit: int, what: str) -> str:
    if len(name) > limit:
        raise ValueError(
            f"{what} name {name!r} is {len(name)} characters; AWS allows {limit}: "
            "shorten the dataset, project or environment name"
        )
    return name


@dataclass(frozen=True)
class Names:
    project: str
    env: str
    account: str
    region: str

    @classmethod
    def for_environment(
        cls, platform: Platform, env: Environment, account: str | None = None
    ) -> Names:
        resolved = account or env.resolved_account()
        if resolved is None:
            raise ValueError(
                f"environment {env.name!r} has no account: set environments.{env.name}.account "
                "in spec/platform.yaml, or CDK_DEFAULT_ACCOUNT, or pass one explicitly"
            )
        return cls(project=platform.project, env=env.name, account=resolved, region=env.region)

    # --- building blocks
    @property
    def prefix(self) -> str:
        """`<project>-<env>`: starts every name that allows hyphens."""
        return f"{self.project}-{self.env}"

    @property
    def tags(self) -> dict[str, str]:
        """The tags every resource of the platform carries (cost allocation). The stacks get
        them from CloudFormation; a request in a definition (the pipeline's createCluster,
        the clusters `dp emr run` starts from it) must carry them itself."""
        return {"project": self.project, "environment": self.env}

    @property
    def glue_prefix(self) -> str:
        """Glue and Athena identifiers: lower case with underscores (Athena rejects '-')."""
        return f"{self.project}_{self.env}".replace("-", "_")

    # --- S3
    def bucket(self, zone: str) -> str:
        if zone not in BUCKET_ZONES:
            raise ValueError(f"unknown bucket zone {zone!r}; known: {', '.join(BUCKET_ZONES)}")
        name = f"{self.prefix}-{zone}-{self.account}-{self.region}"
        if not _is_token(name) and len(name) > S3_BUCKET_MAX:
            raise ValueError(
                f"bucket name {name!r} is {len(name)} characters; S3 allows "
                f"{S3_BUCKET_MAX}: shorten the project or environment name"
            )
        return name

    @property
    def raw_bucket(self) -> str:
        return self.bucket("raw")

    @property
    def curated_bucket(self) -> str:
        return self.bucket("curated")

    @property
    def features_bucket(self) -> str:
        return self.bucket("features")

    @property
    def models_bucket(self) -> str:
        return self.bucket("models")

    @property
    def athena_results_bucket(self) -> str:
        return self.bucket("athena-results")

    @property
    def artifacts_bucket(self) -> str:
        return self.bucket("artifacts")

    @property
    def access_logs_bucket(self) -> str:
        return self.bucket("access-logs")

    # --- KMS
    @property
    def lake_key_alias(self) -> str:
        return f"alias/{self.prefix}/lake"

    # --- streaming
    def stream(self, dataset: str) -> str:
        return f"{self.prefix}-{dataset}"

    def delivery_stream(self, dataset: str) -> str:
        return _limited(f"{self.prefix}-{dataset}-to-raw", SERVICE_NAME_MAX, "delivery stream")

    def transform_function(self, dataset: str) -> str:
        return _limited(
            f"{self.prefix}-{dataset}-firehose-transform", SERVICE_NAME_MAX, "Lambda function"
        )

    # --- Glue
    def database(self, zone: str) -> str:
        if zone not in DATABASE_ZONES:
            raise ValueError(f"unknown database zone {zone!r}; known: {', '.join(DATABASE_ZONES)}")
        return f"{self.glue_prefix}_{zone}"

    @property
    def raw_database(self) -> str:
        return self.database("raw")

    @property
    def curated_database(self) -> str:
        return self.database("curated")

    @property
    def features_database(self) -> str:
        return self.database("features")

    def table(self, dataset: str) -> str:
        """A dataset's table name; the same in the raw and curated databases."""
        return dataset

    def quarantine_table(self, dataset: str) -> str:
        """The dataset's quarantined rows, in the curated database."""
        return f"{dataset}_quarantine"

    def crawler(self, dataset: str) -> str:
        return f"{self.prefix}-raw-{dataset}"

    def curate_job(self, dataset: str) -> str:
        return f"{self.prefix}-curate-{dataset}"

    @property
    def security_configuration(self) -> str:
        return f"{self.prefix}-lake"

    # --- Athena
    @property
    def workgroup(self) -> str:
        return self.prefix

    # --- IAM: role names carry the region because IAM is global and an account may run
    # the same environment in two regions.
    def role(self, purpose: str) -> str:
        return _limited(f"{self.prefix}-{purpose}-{self.region}", IAM_ROLE_MAX, "role")

    @property
    def role_name_pattern(self) -> str:
        """Matches every role the platform creates (the lake key lets only these use it)."""
        return f"{self.prefix}-*"

    def firehose_role(self, dataset: str) -> str:
        return self.role(f"firehose-{dataset}")

    def transform_role(self, dataset: str) -> str:
        return self.role(f"transform-{dataset}")

    def crawler_role(self, dataset: str) -> str:
        return self.role(f"crawler-{dataset}")

    def curate_job_role(self, dataset: str) -> str:
        return self.role(f"curate-{dataset}")

    def maintenance_role(self, dataset: str) -> str:
        """The scheduled OPTIMIZE / VACUUM of an Iceberg table (stacks/constructs/table_maintenance.py)."""
        return self.role(f"maintain-{dataset}")

    @property
    def emr_service_role(self) -> str:
        return self.role("emr-service")

    @property
    def emr_instance_role(self) -> str:
        return self.role("emr-ec2")

    @property
    def flow_logs_role(self) -> str:
        return self.role("vpc-flow-logs")

    # --- EMR and the network
    @property
    def emr_cluster(self) -> str:
        """The long-running cluster; transient ones add a suffix (`<prefix>-pipeline`)."""
        return self.prefix

    @property
    def emr_security_configuration(self) -> str:
        return f"{self.prefix}-emr"

    @property
    def emr_instance_profile(self) -> str:
        # The role's own name, as AWS's EMR_EC2_DefaultRole does: Step Functions'
        # EmrCreateCluster, given a role, sends that role's name as JobFlowRole, and EMR
        # reads JobFlowRole as an instance profile name ("Invalid InstanceProfile" otherwise).
        return self.emr_instance_role

    @property
    def vpc(self) -> str:
        return self.prefix

    @property
    def flow_log_group(self) -> str:
        return f"/{self.project}/{self.env}/vpc-flow-logs"

    # --- orchestration and monitoring
    @property
    def ml_pipeline(self) -> str:
        """The ML pipeline's state machine."""
        return f"{self.prefix}-ml-pipeline"

    @property
    def ml_pipeline_arn(self) -> str:
        """The state machine's ARN (the commercial partition, as everywhere in `dp`)."""
        return f"arn:aws:states:{self.region}:{self.account}:stateMachine:{self.ml_pipeline}"

    @property
    def transient_emr_cluster(self) -> str:
        return f"{self.prefix}-pipeline"

    # --- model monitoring (`dp monitor`, stacks/monitoring.py)
    @property
    def monitoring_namespace(self) -> str:
        """The CloudWatch namespace of the monitored models' figures (dimension Model)."""
        return f"{self.project}/{self.env}/ModelMonitoring"

    def monitor_alarm(self, model: str, kind: str) -> str:
        """A monitored model's alarm: `drift`, `performance` or `breach` (the one whose
        change to ALARM starts the ML pipeline)."""
        return f"{self.prefix}-{model}-{kind}"

    def retrain_rule(self, model: str) -> str:
        """The default bus's rule: the model's breach alarm in ALARM -> the ML pipeline."""
        return _limited(f"{self.prefix}-{model}-retrain-on-breach", 64, "EventBridge rule")

    @property
    def alerts_topic(self) -> str:
        return f"{self.prefix}-alerts"

    @property
    def dashboard(self) -> str:
        return f"{self.prefix}-pipeline"

    def emr_step(self, step: str, detail: str = "") -> str:
        """EMR step names carry the prefix, so alerts can tell the platform's steps apart."""
        return f"{self.prefix} {step}" + (f" {detail}" if detail else "")

    @property
    def quality_gate_function(self) -> str:
        return f"{self.prefix}-quality-gate"

    def model_package_group(self, model: str) -> str:
        return f"{self.prefix}-{model.replace('_', '-')}"

    def training_job_prefix(self, model: str) -> str:
        return f"{self.prefix}-{model.replace('_', '-')}"

    @property
    def training_security_group(self) -> str:
        return f"{self.prefix}-training"

    @property
    def sagemaker_role(self) -> str:
        return self.role("sagemaker")

    @property
    def pipeline_role(self) -> str:
        return self.role("ml-pipeline")

    @property
    def pipeline_log_group(self) -> str:
        return f"/aws/vendedlogs/states/{self.prefix}-ml-pipeline"

    # --- real-time scoring (models with a `serving:` section)
    def endpoint(self, model: str) -> str:
        """The model's SageMaker endpoint (it serves the latest Approved package)."""
        return f"{self.prefix}-{model.replace('_', '-')}"

    def scorer_function(self, model: str) -> str:
        """The stream consumer Lambda that keeps online features and scores the model."""
        return f"{self.prefix}-score-{model.replace('_', '-')}"

    def stream_consumer(self, model: str) -> str:
        """The scorer's own (enhanced fan-out) consumer of its stream."""
        return f"{self.prefix}-score-{model.replace('_', '-')}"

    def scorer_role(self, model: str) -> str:
        return self.role(f"score-{model.replace('_', '-')}")

    @property
    def online_features_table(self) -> str:
        """DynamoDB: each customer's recent events (pk customer, sk events#<model>: one item
        per scorer), from which the online features are computed exactly as the feature SQL
        computes them."""
        return f"{self.prefix}-online-features"

    @property
    def scores_table(self) -> str:
        """DynamoDB: every score the scorers wrote (pk customer, sk score#<model>#<as_of>,
        and the flagged markers flagged#<model>#<customer>#<as_of>)."""
        return f"{self.prefix}-scores"

    @property
    def event_bus(self) -> str:
        """EventBridge bus for the platform's events (the served models' HighChurnRisk,
        HighValueCustomer, ...)."""
        return f"{self.prefix}-events"

    @property
    def interventions_queue(self) -> str:
        """SQS: the served models' events for the CRM to act on (an offer to a customer at
        risk, a loyalty offer to a valuable one, ...)."""
        return f"{self.prefix}-interventions"

    @property
    def interventions_dlq(self) -> str:
        """SQS: interventions the CRM did not take (and events EventBridge could not put)."""
        return f"{self.prefix}-interventions-dlq"

    @property
    def interventions_rule(self) -> str:
        """The rule of the platform's event bus that routes the served models' events
        (each model's detail-type) to the interventions queue and the alerts topic."""
        return f"{self.prefix}-interventions"

    def scorer_failures_queue(self, model: str) -> str:
        """SQS: the scorer's on-failure destination (the batches it gave up on)."""
        return f"{self.scorer_function(model)}-failures"

    def scorer_log_group(self, model: str) -> str:
        return f"/aws/lambda/{self.scorer_function(model)}"

    def deployer_function(self, model: str) -> str:
        """The Lambda that rolls the model's endpoint to a newly approved package."""
        return _limited(
            f"{self.prefix}-deploy-{model.replace('_', '-')}", SERVICE_NAME_MAX, "Lambda function"
        )

    def deployer_role(self, model: str) -> str:
        return self.role(f"deploy-{model.replace('_', '-')}")

    def deployer_dlq(self, model: str) -> str:
        """SQS: approvals the deployer could not roll out (after its retries)."""
        return f"{self.deployer_function(model)}-dlq"

    def deployer_log_group(self, model: str) -> str:
        return f"/aws/lambda/{self.deployer_function(model)}"

    def approval_rule(self, model: str) -> str:
        """The default bus's rule for the approval of one of the model's packages."""
        return f"{self.prefix}-approved-{model.replace('_', '-')}"

    def endpoint_log_group(self, model: str) -> str:
        """Where SageMaker writes the endpoint's container logs (created by the stack so that
        it is encrypted and expires)."""
        return f"/aws/sagemaker/Endpoints/{self.endpoint(model)}"

    @property
    def serving_key_alias(self) -> str:
        """The serving stack's key: its queues, which EventBridge writes to."""
        return f"alias/{self.prefix}/serving"

    @property
    def scorer_security_group(self) -> str:
        return f"{self.prefix}-scorers"

    @property
    def endpoint_security_group(self) -> str:
        return f"{self.prefix}-endpoints"

    @property
    def serving_dashboard(self) -> str:
        return f"{self.prefix}-serving"

    # --- audit (CloudTrail): its own bucket, key, log group and Glue database
    @property
    def audit_bucket(self) -> str:
        """The trail's bucket (Object Lock): not a lake zone, so not in BUCKET_ZONES."""
        name = f"{self.prefix}-audit-{self.account}-{self.region}"
        if not _is_token(name) and len(name) > S3_BUCKET_MAX:
            raise ValueError(
                f"bucket name {name!r} is {len(name)} characters; S3 allows "
                f"{S3_BUCKET_MAX}: shorten the project or environment name"
            )
        return name

    @property
    def trail(self) -> str:
        return f"{self.prefix}-audit"

    @property
    def audit_key_alias(self) -> str:
        return f"alias/{self.prefix}/audit"

    @property
    def audit_log_group(self) -> str:
        """The trail's CloudWatch Logs copy."""
        return f"/{self.project}/{self.env}/cloudtrail"

    @property
    def cloudtrail_logs_role(self) -> str:
        """The role CloudTrail assumes to write to the audit log group."""
        return self.role("cloudtrail-logs")

    @property
    def audit_database(self) -> str:
        """The Glue database of the trail's `cloudtrail` table (not a lake zone)."""
        return f"{self.glue_prefix}_audit"

    # --- CloudWatch Logs
    def delivery_log_group(self, dataset: str) -> str:
        return f"/{self.project}/{self.env}/firehose/{dataset}"

    def transform_log_group(self, dataset: str) -> str:
        return f"/aws/lambda/{self.transform_function(dataset)}"

    # --- CloudFormation
    def stack(self, kind: str) -> str:
        """Stack names: `<project>-<env>-<kind>`, e.g. mldp-dev-storage."""
        return f"{self.prefix}-{kind}"
