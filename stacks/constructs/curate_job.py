"""The `curate-<dataset>` Glue ETL job and its least-privilege role."""

from __future__ import annotations

from aws_cdk import Aws, Duration, Tags
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import layout
from dataplatform.jobs import iceberg
from dataplatform.jobs.curate_run import GLUE_TEMP_PREFIX
from dataplatform.jobs.curate_run import default_arguments as curate_job_arguments
from dataplatform.naming import Names
from dataplatform.spec import Dataset, Environment
from stacks.constructs.dataset_tables import DatasetTables, catalog_arn
from stacks.constructs.iam_dependency import wait_for_role_policy
from stacks.constructs.lake import Lake
from stacks.constructs.nag import arn_token

WORKER_TYPES = {
    "G.025X": glue.WorkerType.G_025X,
    "G.1X": glue.WorkerType.G_1X,
    "G.2X": glue.WorkerType.G_2X,
    "G.4X": glue.WorkerType.G_4X,
    "G.8X": glue.WorkerType.G_8X,
}
CURATE_SCRIPT = layout.job_script_key("glue_jobs", "curate.py")


class CurateJob(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dataset: Dataset,
        names: Names,
        settings: Environment,
        lake: Lake,
        tables: DatasetTables,
        security_configuration: glue.SecurityConfiguration,
    ) -> None:
        super().__init__(scope, construct_id)
        ds = dataset.name
        raw, curated, artifacts = lake.raw, lake.curated, lake.artifacts
        job_name = names.curate_job(ds)

        role = iam.Role(
            self,
            "Role",
            role_name=names.curate_job_role(ds),
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Glue job {job_name}: raw/{ds}/ -> curated/{ds}/ and its quarantine",
        )
        # The job must read every raw row, including objects classified as PHI.
        Tags.of(role).add("phi-access", "true")
        statements = [
            ("ReadRaw", ["s3:GetObject"], [raw.arn_for_objects(f"{layout.raw_prefix(ds)}*")]),
            (
                "WriteCurated",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [
                    curated.arn_for_objects(f"{layout.curated_prefix(ds)}*"),
                    curated.arn_for_objects(f"{layout.quarantine_prefix(ds)}*"),
                    curated.arn_for_objects(layout.curate_state_key(ds)),
                ],
            ),
            ("ReadCode", ["s3:GetObject"], [artifacts.arn_for_objects(f"{layout.CODE_PREFIX}*")]),
            (
                "WriteReportsAndTemp",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [
                    artifacts.arn_for_objects(f"{layout.curate_report_prefix(ds)}*"),
                    artifacts.arn_for_objects(f"{GLUE_TEMP_PREFIX}{job_name}/*"),
                ],
            ),
            (
                "ListBuckets",
                ["s3:ListBucket", "s3:GetBucketLocation"],
                [raw.bucket_arn, curated.bucket_arn, artifacts.bucket_arn],
            ),
            (
                "UseLakeKey",
                ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                [lake.key.key_arn],
            ),
            (
                "ReadAndRegisterPartitions",  # Hive tables; Iceberg's: CommitIcebergTable
                [
                    "glue:GetDatabase",
                    "glue:GetTable",
                    "glue:GetPartition",
                    "glue:GetPartitions",
                    "glue:BatchGetPartition",
                    "glue:CreatePartition",
                    "glue:BatchCreatePartition",
                    "glue:BatchUpdatePartition",
                ],
                [
                    catalog_arn(),
                    tables.raw_table.database.database_arn,
                    tables.curated_database.database_arn,
                    tables.raw_table.table_arn,
                    tables.curated_table_arn,
                ],
            ),
            (
                "WriteJobLogs",
                [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:AssociateKmsKey",
                ],
                [f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws-glue/*"],
            ),
        ]
        if dataset.rebuilt_from_all_raw and not dataset.is_iceberg:
            # a complete rebuild removes the curated days it no longer has (curate_run.py)
            statements = [
                (sid, [*actions, "glue:BatchDeletePartition"], resources)
                if sid == "ReadAndRegisterPartitions"
                else (sid, actions, resources)
                for sid, actions, resources in statements
            ]
        if dataset.is_iceberg:
            statements = [s for s in statements if s[0] != "ReadAndRegisterPartitions"]
            # Iceberg's GlueCatalog commits a MERGE or a schema change by pointing the
            # table's metadata_location at the new metadata file (UpdateTable, checked by
            # VersionId); the data and metadata files are below curated/<ds>/ already.
            statements.append(
                (
                    "CommitIcebergTable",
                    ["glue:GetTable", "glue:UpdateTable"],
                    [catalog_arn(), tables.curated_database.database_arn, tables.curated_table_arn],
                )
            )
        for sid, actions, resources in statements:
            role.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PublishJobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "Glue"}},
            )
        )
        self.role = role

        glue_settings = settings.glue
        self.job = glue.PySparkEtlJob(
            self,
            "Job",
            job_name=job_name,
            description=f"Curate {ds}: type, validate, deduplicate, partition; quarantine the rest",
            role=role,
            script=glue.Code.from_bucket(artifacts, CURATE_SCRIPT),
            extra_python_files=[glue.Code.from_bucket(artifacts, layout.LIBRARY_KEY)],
            # Glue 5.1 ships Iceberg 1.10.0, the version the local platform runs; 5.0 has 1.7.1
            glue_version=glue.GlueVersion.V5_1 if dataset.is_iceberg else glue.GlueVersion.V5_0,
            worker_configuration=glue.WorkerConfiguration(
                worker_type=WORKER_TYPES[glue_settings.worker_type],
                number_of_workers=glue_settings.number_of_workers,
            ),
            continuous_logging=glue.ContinuousLoggingProps(enabled=True, quiet=True),
            enable_metrics=True,
            enable_observability_metrics=True,
            max_concurrent_runs=1,
            max_retries=1,
            timeout=Duration.minutes(glue_settings.timeout_minutes),
            security_configuration=security_configuration,
            default_arguments={
                **curate_job_arguments(dataset, names),
                **(
                    iceberg.glue_job_arguments(f"s3://{names.curated_bucket}/")
                    if dataset.is_iceberg
                    else {}
                ),
                "--TempDir": f"s3://{names.artifacts_bucket}/{GLUE_TEMP_PREFIX}{job_name}/",
                # The job keeps its own watermark next to the data (reruns are idempotent).
                "--job-bookmark-option": "job-bookmark-disable",
            },
        )
        wait_for_role_policy(self.job, role)

        NagSuppressions.add_resource_suppressions(
            role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": f"object keys below the job's own prefixes only (raw/{ds}/, curated/{ds}/, "
                    f"curated/_quarantine/{ds}/, code/, reports/curate/{ds}/, its temp dir): "
                    "partitions and run outputs are new keys on every run",
                    "appliesTo": [
                        f"Resource::{arn_token(raw)}/{layout.raw_prefix(ds)}*",
                        f"Resource::{arn_token(curated)}/{layout.curated_prefix(ds)}*",
                        f"Resource::{arn_token(curated)}/{layout.quarantine_prefix(ds)}*",
                        f"Resource::{arn_token(artifacts)}/{layout.CODE_PREFIX}*",
                        f"Resource::{arn_token(artifacts)}/{layout.curate_report_prefix(ds)}*",
                        f"Resource::{arn_token(artifacts)}/{GLUE_TEMP_PREFIX}{job_name}/*",
                    ],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "Glue names its job log groups itself below /aws-glue/ (suffixed with the "
                    "security configuration), so the prefix is as narrow as Glue allows",
                    "appliesTo": [
                        "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws-glue/*"
                    ],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "the Glue L2 job grants read of exactly its script and library objects "
                    f"({CURATE_SCRIPT}, {layout.LIBRARY_KEY}) with CDK's grantRead action "
                    "set (s3:GetObject*, s3:GetBucket*, s3:List*)",
                    "appliesTo": [
                        "Action::s3:GetObject*",
                        "Action::s3:GetBucket*",
                        "Action::s3:List*",
                    ],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "cloudwatch:PutMetricData has no resource-level permissions; the statement "
                    "is limited to the Glue namespace by condition",
                    "appliesTo": ["Resource::*"],
                },
            ],
            apply_to_children=True,
        )
