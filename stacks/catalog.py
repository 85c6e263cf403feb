"""CatalogStack: Glue databases (raw, curated, features), catalog encryption, the
security configuration, and per dataset its tables, raw crawler and curate job."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Stack
from aws_cdk import aws_glue as glue
from constructs import Construct

from dataplatform.naming import Names, pascal_case
from dataplatform.spec import Dataset, Environment
from stacks.constructs.curate_job import CurateJob
from stacks.constructs.dataset_tables import DatasetTables
from stacks.constructs.job_code import JobCode
from stacks.constructs.lake import Lake


class CatalogStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        lake: Lake,
        datasets: tuple[Dataset, ...],
        job_code_dir: Path,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.databases = {
            zone: glue.Database(
                self,
                f"{pascal_case(zone)}Database",
                database_name=names.database(zone),
                description=f"{names.prefix}: {zone} zone",
                location_uri=f"s3://{names.bucket(zone)}/",
            )
            for zone in ("raw", "curated", "features")
        }

        # One per account and region: it encrypts every catalog object with the lake key.
        self.catalog_encryption = glue.CfnDataCatalogEncryptionSettings(
            self,
            "CatalogEncryption",
            catalog_id=self.account,
            data_catalog_encryption_settings=glue.CfnDataCatalogEncryptionSettings.DataCatalogEncryptionSettingsProperty(
                encryption_at_rest=glue.CfnDataCatalogEncryptionSettings.EncryptionAtRestProperty(
                    catalog_encryption_mode="SSE-KMS", sse_aws_kms_key_id=lake.key.key_arn
                ),
                connection_password_encryption=glue.CfnDataCatalogEncryptionSettings.ConnectionPasswordEncryptionProperty(
                    return_connection_password_encrypted=True, kms_key_id=lake.key.key_arn
                ),
            ),
        )

        self.security_configuration = glue.SecurityConfiguration(
            self,
            "SecurityConfiguration",
            security_configuration_name=names.security_configuration,
            s3_encryption=glue.S3Encryption.kms(lake.key),
            cloud_watch_encryption=glue.CloudWatchEncryption.kms(lake.key),
            job_bookmarks_encryption=glue.JobBookmarksEncryption.client_side_kms(lake.key),
        )

        self.job_code = JobCode(self, "JobCode", names=names, lake=lake, bundle_dir=job_code_dir)

        self.tables: dict[str, DatasetTables] = {}
        self.crawlers: dict[str, glue.CfnCrawler] = {}
        self.curate_jobs: dict[str, CurateJob] = {}
        for ds in datasets:
            cid = pascal_case(ds.name)
            tables = DatasetTables(
                self,
                f"{cid}Tables",
                dataset=ds,
                names=names,
                settings=settings,
                lake=lake,
                raw_database=self.databases["raw"],
                curated_database=self.databases["curated"],
                security_configuration=self.security_configuration,
            )
            for table in (tables.raw_table, tables.curated_table, tables.quarantine_table):
                table.node.add_dependency(self.catalog_encryption)
            job = CurateJob(
                self,
                f"{cid}Curate",
                dataset=ds,
                names=names,
                settings=settings,
                lake=lake,
                tables=tables,
                security_configuration=self.security_configuration,
            )
            job.job.node.add_dependency(self.job_code)
            self.tables[ds.name] = tables
            self.crawlers[ds.name] = tables.crawler
            self.curate_jobs[ds.name] = job
