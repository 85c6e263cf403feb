"""A curated Iceberg table's scheduled maintenance (the dataset's `maintenance` in the spec):
EventBridge Scheduler schedules whose universal target is Athena's StartQueryExecution,
running `OPTIMIZE ... REWRITE DATA USING BIN_PACK` and `VACUUM` in the platform's workgroup,
under a role allowed exactly that: the workgroup, the table, its prefix in the curated
bucket, the results prefix and the lake key."""

from __future__ import annotations

import json

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import layout
from dataplatform.naming import Names
from dataplatform.spec import Dataset
from stacks.constructs.dataset_tables import catalog_arn
from stacks.constructs.iam_dependency import wait_for_role_policy
from stacks.constructs.lake import Lake
from stacks.constructs.nag import arn_token

START_QUERY = "arn:aws:scheduler:::aws-sdk:athena:startQueryExecution"


def maintenance_statements(dataset: Dataset, names: Names) -> dict[str, str]:
    """The scheduled statements by kind (optimize, vacuum), for the kinds the spec schedules."""
    table = f'"{names.curated_database}"."{names.table(dataset.name)}"'
    statements = {
        "optimize": f"OPTIMIZE {table} REWRITE DATA USING BIN_PACK",
        "vacuum": f"VACUUM {table}",
    }
    m = dataset.maintenance
    return {k: v for k, v in statements.items() if getattr(m, k)}


class TableMaintenance(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dataset: Dataset,
        names: Names,
        lake: Lake,
        workgroup: str,
    ) -> None:
        super().__init__(scope, construct_id)
        ds = dataset.name
        self.role: iam.Role
        table_arn = (
            f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:table/"
            f"{names.curated_database}/{names.table(ds)}"
        )
        database_arn = (
            f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:database/"
            f"{names.curated_database}"
        )
        role = iam.Role(
            self,
            "Role",
            role_name=names.maintenance_role(ds),
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            description=f"Scheduled OPTIMIZE and VACUUM of the Iceberg table {ds}",
        )
        self.role = role
        curated, results = lake.curated, lake.athena_results
        for sid, actions, resources in (
            (
                "RunInWorkgroup",
                ["athena:StartQueryExecution", "athena:GetQueryExecution"],
                [f"arn:{Aws.PARTITION}:athena:{Aws.REGION}:{Aws.ACCOUNT_ID}:workgroup/{workgroup}"],
            ),
            # Athena commits the rewritten table as its caller: the table's metadata pointer
            (
                "CommitTable",
                ["glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"],
                [catalog_arn(), database_arn, table_arn],
            ),
            (
                "RewriteTableFiles",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [curated.arn_for_objects(f"{layout.curated_prefix(ds)}*")],
            ),
            (
                "WriteResults",
                ["s3:GetObject", "s3:PutObject"],
                [results.arn_for_objects(f"{layout.ATHENA_RESULTS_PREFIX}*")],
            ),
            (
                "ListBuckets",
                ["s3:ListBucket", "s3:GetBucketLocation"],
                [curated.bucket_arn, results.bucket_arn],
            ),
            (
                "UseLakeKey",
                ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                [lake.key.key_arn],
            ),
        ):
            role.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))

        self.schedules: dict[str, scheduler.CfnSchedule] = {}
        for kind, sql in maintenance_statements(dataset, names).items():
            schedule = scheduler.CfnSchedule(
                self,
                kind.capitalize(),
                name=f"{names.prefix}-{kind}-{ds}"[:64],
                description=f"{kind.upper()} of the curated Iceberg table {ds} (spec maintenance)",
                schedule_expression=getattr(dataset.maintenance, kind),
                schedule_expression_timezone="UTC",
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                kms_key_arn=lake.key.key_arn,
                state="ENABLED",
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=START_QUERY,
                    role_arn=role.role_arn,
                    input=json.dumps(
                        {
                            "QueryString": sql,
                            "WorkGroup": workgroup,
                            "QueryExecutionContext": {"Database": names.curated_database},
                        }
                    ),
                    retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                        maximum_retry_attempts=2, maximum_event_age_in_seconds=3600
                    ),
                ),
            )
            wait_for_role_policy(schedule, role)
            self.schedules[kind] = schedule

        NagSuppressions.add_resource_suppressions(
            role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": f"OPTIMIZE and VACUUM rewrite and delete files below curated/{ds}/ "
                    "(new data and metadata keys on every run) and Athena writes each result "
                    "below its results prefix: object keys of those prefixes only",
                    "appliesTo": [
                        f"Resource::{arn_token(curated)}/{layout.curated_prefix(ds)}*",
                        f"Resource::{arn_token(results)}/{layout.ATHENA_RESULTS_PREFIX}*",
                    ],
                }
            ],
            apply_to_children=True,
        )
