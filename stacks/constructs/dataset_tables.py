"""A dataset's Glue tables (raw and curated) and the crawler that keeps the raw table's
partitions current, all derived from its spec."""

from __future__ import annotations

import json

from aws_cdk import Aws
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import layout
from dataplatform.jobs import iceberg
from dataplatform.naming import Names
from dataplatform.spec import Dataset, Environment
from stacks.constructs.iam_dependency import wait_for_role_policy
from stacks.constructs.lake import Lake
from stacks.constructs.nag import arn_token

GLUE_TYPES = {
    "string": glue.Schema.STRING,
    "int": glue.Schema.INTEGER,
    "bigint": glue.Schema.BIG_INT,
    "double": glue.Schema.DOUBLE,
    "boolean": glue.Schema.BOOLEAN,
    "date": glue.Schema.DATE,
    "timestamp": glue.Schema.TIMESTAMP,
}
# Raw data is read as delivered: every column a string; typing is the curate job's work.
RAW_FORMATS = {
    "json": glue.DataFormat.JSON,  # OpenX JSON SerDe
    "csv": glue.DataFormat(
        input_format=glue.InputFormat.TEXT,
        output_format=glue.OutputFormat.HIVE_IGNORE_KEY_TEXT,
        serialization_library=glue.SerializationLibrary.OPEN_CSV,
        classification_string=glue.ClassificationString.CSV,
    ),
}
# Matches the transform Lambda's accepted event times: none before 2000, none over a day ahead.
RAW_PROJECTION_START = "2000-01-01"


def glue_columns(dataset: Dataset, *, raw: bool) -> list[glue.Column]:
    columns = dataset.columns if raw else dataset.kept_columns
    return [
        glue.Column(
            name=c.name,
            type=glue.Schema.STRING if raw else GLUE_TYPES[c.type],
            comment=("PII. " if c.name in dataset.pii else "") + c.description or None,
        )
        for c in columns
    ]


class DatasetTables(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dataset: Dataset,
        names: Names,
        settings: Environment,
        lake: Lake,
        raw_database: glue.Database,
        curated_database: glue.Database,
        security_configuration: glue.SecurityConfiguration,
    ) -> None:
        super().__init__(scope, construct_id)
        ds = dataset.name
        parameters = {
            "dataset": ds,
            "pii_columns": ",".join(dataset.pii),
            "primary_key": ",".join(dataset.primary_key),
        }

        self.raw_table = glue.S3Table(
            self,
            "RawTable",
            table_name=names.table(ds),
            database=raw_database,
            description=f"{ds} as delivered (raw zone). {dataset.description}"[:2048],
            columns=glue_columns(dataset, raw=True),
            partition_keys=[
                glue.Column(name="dt", type=glue.Schema.STRING),
                glue.Column(name="hour", type=glue.Schema.STRING),
            ],
            partition_projection={
                "dt": glue.PartitionProjectionConfiguration.date(
                    min=RAW_PROJECTION_START,
                    max="NOW+1DAYS",
                    format="yyyy-MM-dd",
                    step=glue.DateProjectionStep(
                        interval=1, interval_unit=glue.DateIntervalUnit.DAYS
                    ),
                ),
                "hour": glue.PartitionProjectionConfiguration.integer(min=0, max=23, digits=2),
            },
            data_format=RAW_FORMATS[dataset.format],
            compressed=dataset.is_stream,  # Firehose delivers gzip
            storage=glue.S3TableStorage.from_bucket(lake.raw),
            s3_prefix=layout.raw_prefix(ds),
            parameters={
                **parameters,
                **({"skip.header.line.count": "1"} if dataset.format == "csv" else {}),
            },
        )
        self.curated_table: glue.S3Table | glue.CfnTable
        if dataset.is_iceberg:
            self.curated_table = iceberg_table(
                self,
                "CuratedTable",
                dataset=dataset,
                database=curated_database,
                name=names.table(ds),
                location=f"s3://{names.curated_bucket}/{layout.curated_prefix(ds)}",
                parameters=parameters,
            )
            self.curated_table_arn = (
                f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:table/"
                f"{names.curated_database}/{names.table(ds)}"
            )
        else:
            self.curated_table = glue.S3Table(
                self,
                "CuratedTable",
                table_name=names.table(ds),
                database=curated_database,
                description=f"{ds}, typed, validated and deduplicated (curated zone)",
                columns=glue_columns(dataset, raw=False),
                partition_keys=[glue.Column(name="dt", type=glue.Schema.STRING)],
                data_format=glue.DataFormat.PARQUET,
                storage=glue.S3TableStorage.from_bucket(lake.curated),
                s3_prefix=layout.curated_prefix(ds),
                parameters={**parameters, "parquet.compression": "SNAPPY"},
            )
            self.curated_table_arn = self.curated_table.table_arn
        self.curated_database = curated_database

        # Quarantined rows: the raw strings of the kept columns and every reason. Partition
        # projection on dt, so Athena sees each run's quarantine without catalog updates.
        self.quarantine_table = glue.S3Table(
            self,
            "QuarantineTable",
            table_name=names.quarantine_table(ds),
            database=curated_database,
            description=f"{ds} rows the curate job rejected, as they arrived, with the reasons",
            columns=[
                glue.Column(name=c.name, type=glue.Schema.STRING) for c in dataset.kept_columns
            ]
            + [
                glue.Column(
                    name="reason",
                    type=glue.Schema.STRING,
                    comment="every rule the row breaks: <column>:<rule>;...",
                )
            ],
            partition_keys=[glue.Column(name="dt", type=glue.Schema.STRING)],
            partition_projection={
                "dt": glue.PartitionProjectionConfiguration.date(
                    min=RAW_PROJECTION_START,
                    max="NOW+1DAYS",
                    format="yyyy-MM-dd",
                    step=glue.DateProjectionStep(
                        interval=1, interval_unit=glue.DateIntervalUnit.DAYS
                    ),
                )
            },
            data_format=glue.DataFormat.PARQUET,
            storage=glue.S3TableStorage.from_bucket(lake.curated),
            s3_prefix=layout.quarantine_prefix(ds),
            parameters={**parameters, "parquet.compression": "SNAPPY"},
        )

        # --- crawler: registers new raw partitions for Spark readers (which ignore
        # partition projection) and logs schema drift without changing the table.
        role = iam.Role(
            self,
            "CrawlerRole",
            role_name=names.crawler_role(ds),
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"Crawler of raw {ds}: reads raw/{ds}/, updates its raw table",
        )
        raw = lake.raw
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadRawPrefix",
                actions=["s3:GetObject"],
                resources=[raw.arn_for_objects(f"{layout.raw_prefix(ds)}*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListRawPrefix",
                actions=["s3:ListBucket"],
                resources=[raw.bucket_arn],
                conditions={
                    "StringLike": {
                        "s3:prefix": [layout.raw_prefix(ds), f"{layout.raw_prefix(ds)}*"]
                    }
                },
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="UseLakeKey",
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                resources=[lake.key.key_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="UpdateRawTable",
                actions=[
                    "glue:GetDatabase",
                    "glue:GetTable",
                    "glue:UpdateTable",
                    "glue:GetPartition",
                    "glue:GetPartitions",
                    "glue:BatchGetPartition",
                    "glue:CreatePartition",
                    "glue:BatchCreatePartition",
                    "glue:UpdatePartition",
                    "glue:BatchUpdatePartition",
                ],
                resources=[catalog_arn(), raw_database.database_arn, self.raw_table.table_arn],
            )
        )
        crawler_logs = (
            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws-glue/crawlers*"
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteCrawlerLogs",
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:AssociateKmsKey",
                ],
                resources=[crawler_logs],
            )
        )
        self.crawler_role = role

        schedule = settings.glue.crawler_schedule
        self.crawler = glue.CfnCrawler(
            self,
            "Crawler",
            name=names.crawler(ds),
            description=f"Adds new raw partitions of {ds}; logs schema changes",
            role=role.role_arn,
            database_name=raw_database.database_name,
            targets=glue.CfnCrawler.TargetsProperty(
                s3_targets=[
                    glue.CfnCrawler.S3TargetProperty(
                        path=f"s3://{raw.bucket_name}/{layout.raw_prefix(ds)}"
                    )
                ]
            ),
            schedule=(
                glue.CfnCrawler.ScheduleProperty(schedule_expression=schedule) if schedule else None
            ),
            recrawl_policy=glue.CfnCrawler.RecrawlPolicyProperty(
                recrawl_behavior="CRAWL_NEW_FOLDERS_ONLY"
            ),
            schema_change_policy=glue.CfnCrawler.SchemaChangePolicyProperty(
                update_behavior="LOG", delete_behavior="LOG"
            ),
            crawler_security_configuration=security_configuration.security_configuration_name,
            configuration=json.dumps(
                {
                    "Version": 1.0,
                    "CrawlerOutput": {"Partitions": {"AddOrUpdateBehavior": "InheritFromTable"}},
                    "Grouping": {"TableGroupingPolicy": "CombineCompatibleSchemas"},
                }
            ),
        )
        wait_for_role_policy(self.crawler, role)

        NagSuppressions.add_resource_suppressions(
            role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": f"the crawler reads every object below raw/{ds}/ (new partitions "
                    "appear as new keys) and nothing else",
                    "appliesTo": [f"Resource::{arn_token(raw)}/{layout.raw_prefix(ds)}*"],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "Glue crawlers write to log groups it names itself below /aws-glue/crawlers "
                    "(suffixed with the security configuration); the prefix is as narrow as "
                    "Glue allows",
                    "appliesTo": [
                        "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws-glue/crawlers*"
                    ],
                },
            ],
            apply_to_children=True,
        )


def iceberg_table(
    scope: Construct,
    construct_id: str,
    *,
    dataset: Dataset,
    database: glue.Database,
    name: str,
    location: str,
    parameters: dict[str, str],
) -> glue.CfnTable:
    """The curated table as an Apache Iceberg table: Glue writes its first metadata file
    (schema with field ids, identity partition on dt, the write and VACUUM properties of
    jobs/iceberg.py) when CloudFormation creates it. Later schema changes are the curate
    job's (Iceberg's ALTER TABLE, metadata only): the template gives the create-time shape."""
    shape = iceberg.table_shape(dataset, location)
    pii = set(dataset.pii)
    T = glue.CfnTable
    fields = [
        T.IcebergStructFieldProperty(
            id=f["Id"],
            name=f["Name"],
            type=f["Type"],
            required=f["Required"],
            doc=("PII. " if f["Name"] in pii else "") + f.get("Doc", "") or None,
        )
        for f in shape["Schema"]["Fields"]
    ]
    return glue.CfnTable(
        scope,
        construct_id,
        catalog_id=Aws.ACCOUNT_ID,
        database_name=database.database_name,
        table_input=T.TableInputProperty(
            name=name,
            description=f"{dataset.name}, typed, validated and deduplicated (curated zone, "
            "Apache Iceberg: MERGEd by primary key)",
            table_type="EXTERNAL_TABLE",
            parameters=parameters,
            storage_descriptor=T.StorageDescriptorProperty(
                location=location,
                columns=[
                    T.ColumnProperty(name=c.name, type=c.type.input_string, comment=c.comment)
                    for c in (
                        glue_columns(dataset, raw=False)
                        + [glue.Column(name="dt", type=glue.Schema.STRING)]
                    )
                ],
            ),
        ),
        open_table_format_input=T.OpenTableFormatInputProperty(
            iceberg_input=T.IcebergInputProperty(
                metadata_operation="CREATE",
                version="2",
                iceberg_table_input=T.IcebergTableInputProperty(
                    location=location,
                    schema=T.IcebergSchemaProperty(
                        schema_id=shape["Schema"]["SchemaId"], type="struct", fields=fields
                    ),
                    partition_spec=T.IcebergPartitionSpecProperty(
                        spec_id=shape["PartitionSpec"]["SpecId"],
                        fields=[
                            T.IcebergPartitionFieldProperty(
                                source_id=f["SourceId"],
                                transform=f["Transform"],
                                name=f["Name"],
                                field_id=f["FieldId"],
                            )
                            for f in shape["PartitionSpec"]["Fields"]
                        ],
                    ),
                    properties=shape["Properties"],
                ),
            )
        ),
    )


def catalog_arn() -> str:
    return f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:catalog"
