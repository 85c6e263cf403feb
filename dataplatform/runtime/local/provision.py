"""Provision the local platform from the spec, with the same `naming` the stacks use:
the lake key, buckets (SSE-KMS default, versioning, lifecycle, public access blocked),
Kinesis streams, Firehose definitions, Glue databases/tables/crawlers/jobs/security
configuration, the Athena workgroup, the alerts SNS topic, a SageMaker model package group
per model, what SageMaker training and the endpoints look up (the execution role, the VPC
with CDK's subnet tags, the training and endpoint security groups), and the job code in
the artifacts bucket (the training source at least).

Idempotent: what exists is left as it is (or brought to the spec), so `dp local up` twice
is harmless. Not applied: the TLS-only bucket policy, which moto turns into a deny-all
(docs/moto.md). Every function takes a `clients(service)` factory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataplatform import layout
from dataplatform.naming import BUCKET_ZONES, DATABASE_ZONES, Names
from dataplatform.spec import Dataset, Environment, Platform

Clients = Callable[[str], Any]

PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    },
}
TEXT_FORMATS = {
    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
}
RAW_SERDES = {
    "json": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"},
    "csv": {"SerializationLibrary": "org.apache.hadoop.hive.serde2.OpenCSVSerde"},
}


# ----------------------------------------------------------------------------- definitions


def lifecycle_rules(zone: str, settings: Environment) -> list[dict]:
    """The S3 lifecycle rules of a bucket, as the StorageStack sets them."""
    lifecycle = settings.lifecycle
    if zone == "access-logs":
        return [
            {
                "ID": "expire-access-logs",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "Expiration": {"Days": settings.log_retention_days},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
            },
            {
                "ID": "abort-incomplete-multipart-uploads",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            },
        ]
    rules: list[dict] = [
        {
            "ID": "abort-incomplete-multipart-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
        {
            "ID": "expire-noncurrent-versions",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "NoncurrentVersionExpiration": {
                "NoncurrentDays": lifecycle.noncurrent_version_expiration_days
            },
        },
    ]
    if zone == "raw":
        rules.append(
            {
                "ID": "tier-raw-data",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "Transitions": [
                    {"Days": lifecycle.raw_infrequent_access_days, "StorageClass": "STANDARD_IA"},
                    {
                        "Days": lifecycle.raw_archive_days,
                        "StorageClass": lifecycle.raw_archive_storage_class,
                    },
                ],
            }
        )
    if zone == "athena-results":
        rules.append(
            {
                "ID": "expire-query-results",
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "Expiration": {"Days": lifecycle.athena_results_expiration_days},
            }
        )
    return rules


def raw_table_input(dataset: Dataset, names: Names) -> dict:
    """The raw table as the CatalogStack defines it: every column a string, dt/hour partitions
    with partition projection (Athena) - the crawler adds catalog partitions for Spark."""
    parameters = {
        "classification": dataset.format,
        "dataset": dataset.name,
        "pii_columns": ",".join(dataset.pii),
        "projection.enabled": "true",
        "projection.dt.type": "date",
        "projection.dt.range": "2000-01-01,NOW+1DAYS",
        "projection.dt.format": "yyyy-MM-dd",
        "projection.hour.type": "integer",
        "projection.hour.range": "0,23",
        "projection.hour.digits": "2",
    }
    if dataset.format == "csv":
        parameters["skip.header.line.count"] = "1"
    return {
        "Name": names.table(dataset.name),
        "TableType": "EXTERNAL_TABLE",
        "Parameters": parameters,
        "PartitionKeys": [{"Name": "dt", "Type": "string"}, {"Name": "hour", "Type": "string"}],
        "StorageDescriptor": {
            "Columns": [{"Name": c.name, "Type": "string"} for c in dataset.columns],
            "Location": f"s3://{names.raw_bucket}/{layout.raw_prefix(dataset.name)}",
            "Compressed": dataset.is_stream,
            **TEXT_FORMATS,
            "SerdeInfo": RAW_SERDES[dataset.format],
        },
    }


def curated_table_input(dataset: Dataset, names: Names) -> dict:
    return {
        "Name": names.table(dataset.name),
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "dataset": dataset.name,
            "pii_columns": ",".join(dataset.pii),
        },
        "PartitionKeys": [{"Name": "dt", "Type": "string"}],
        "StorageDescriptor": {
            "Columns": [{"Name": c.name, "Type": c.type} for c in dataset.kept_columns],
            "Location": f"s3://{names.curated_bucket}/{layout.curated_prefix(dataset.name)}",
            "Compressed": False,
            **PARQUET,
        },
    }


def quarantine_table_input(dataset: Dataset, names: Names) -> dict:
    return {
        "Name": names.quarantine_table(dataset.name),
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "dataset": dataset.name,
            "pii_columns": ",".join(dataset.pii),
            "projection.enabled": "true",
            "projection.dt.type": "date",
            "projection.dt.range": "2000-01-01,NOW+1DAYS",
            "projection.dt.format": "yyyy-MM-dd",
        },
        "PartitionKeys": [{"Name": "dt", "Type": "string"}],
        "StorageDescriptor": {
            "Columns": [{"Name": c.name, "Type": "string"} for c in dataset.kept_columns]
            + [{"Name": "reason", "Type": "string"}],
            "Location": f"s3://{names.curated_bucket}/{layout.quarantine_prefix(dataset.name)}",
            "Compressed": False,
            **PARQUET,
        },
    }


# ----------------------------------------------------------------------------- provisioning


def provision(
    platform: Platform,
    settings: Environment,
    names: Names,
    clients: Clients,
    *,
    job_code_dir: Path | None = None,
    build_dir: Path | None = None,
) -> dict[str, list[str]]:
    """Create what is missing; returns {kind: [names created]} (empty lists on a rerun).
    `build_dir` is where the Lambda functions' packages are staged (default: beside
    `job_code_dir`, else a temporary folder)."""
    import tempfile

    created: dict[str, list[str]] = defaultdict(list)
    build_dir = build_dir or (
        job_code_dir.parent if job_code_dir is not None else Path(tempfile.mkdtemp(prefix="dp-"))
    )
    key_arn = _ensure_key(clients("kms"), names, created)
    _ensure_buckets(clients("s3"), names, settings, key_arn, created)
    _ensure_streams(clients("kinesis"), platform, settings, names, key_arn, created)
    transforms = {
        ds.name: ensure_function(
            clients,
            names,
            function=names.transform_function(ds.name),
            role=names.transform_role(ds.name),
            code=lambda_code("firehose_transform", platform, build_dir),
            environment={"DATASET": ds.name},
            timeout=60,
            memory=512,
            key_arn=key_arn,
            created=created,
        )
        for ds in platform.stream_datasets
    }
    _ensure_delivery_streams(
        clients("firehose"),
        clients("kinesis"),
        clients("iam"),
        platform,
        settings,
        names,
        key_arn,
        transforms,
        created,
    )
    _ensure_catalog(clients("glue"), platform, settings, names, key_arn, created)
    _ensure_workgroup(clients("athena"), settings, names, key_arn, created)
    alerts = ensure_alerts_topic(clients("sns"), names, key_arn, created)
    ensure_model_package_groups(clients("sagemaker"), platform, names, created)
    if platform.models:
        ensure_sagemaker_role(clients("iam"), names, created)
        ensure_network(clients("ec2"), platform, settings, names, created)
    if any(m.serving for m in platform.models):
        ensure_serving(clients, names, key_arn, created, alerts_topic=alerts)
        for model in platform.models:
            if model.serving is not None:
                ensure_scorer(clients, platform, names, model, key_arn, build_dir, created)
                ensure_deployer(clients, platform, names, model, key_arn, build_dir, created)
    ensure_governance(clients, platform, names, created)
    if settings.emr.long_running:
        ensure_emr_cluster(clients, settings, names, created)
    if job_code_dir is not None:
        upload_job_code(clients("s3"), names, job_code_dir, key_arn)
    elif platform.models:  # what a training job runs (the job code bundle has it too)
        upload_training_source(clients("s3"), names, key_arn)
    return dict(created)


def _ensure_key(kms, names: Names, created) -> str:
    for alias in kms.list_aliases()["Aliases"]:
        if alias["AliasName"] == names.lake_key_alias:
            return kms.describe_key(KeyId=alias["TargetKeyId"])["KeyMetadata"]["Arn"]
    key = kms.create_key(Description=f"{names.prefix}: lake key (local)")["KeyMetadata"]
    kms.enable_key_rotation(KeyId=key["KeyId"])
    kms.create_alias(AliasName=names.lake_key_alias, TargetKeyId=key["KeyId"])
    created["kms_alias"].append(names.lake_key_alias)
    return key["Arn"]


def _ensure_buckets(s3, names: Names, settings: Environment, key_arn: str, created) -> None:
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for zone in BUCKET_ZONES:
        bucket = names.bucket(zone)
        if bucket not in existing:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": settings.region}
            )
            created["bucket"].append(bucket)
        encryption = (
            {"SSEAlgorithm": "AES256"}
            if zone == "access-logs"
            else {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
        )
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": encryption,
                        "BucketKeyEnabled": zone != "access-logs",
                    }
                ]
            },
        )
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": lifecycle_rules(zone, settings)}
        )


def _ensure_streams(
    kinesis, platform: Platform, settings: Environment, names: Names, key_arn: str, created
) -> None:
    existing = set(kinesis.list_streams().get("StreamNames", []))
    for ds in platform.stream_datasets:
        name = names.stream(ds.name)
        if name in existing:
            continue
        provisioned = settings.kinesis.capacity_mode == "provisioned"
        kwargs = {"ShardCount": settings.kinesis.shard_count} if provisioned else {}
        kinesis.create_stream(
            StreamName=name,
            StreamModeDetails={"StreamMode": "PROVISIONED" if provisioned else "ON_DEMAND"},
            **kwargs,
        )
        kinesis.get_waiter("stream_exists").wait(
            StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
        )
        kinesis.start_stream_encryption(StreamName=name, EncryptionType="KMS", KeyId=key_arn)
        if settings.kinesis.retention_hours > 24:
            kinesis.increase_stream_retention_period(
                StreamName=name, RetentionPeriodHours=settings.kinesis.retention_hours
            )
        created["stream"].append(name)


def _ensure_delivery_streams(
    firehose,
    kinesis,
    iam,
    platform: Platform,
    settings: Environment,
    names: Names,
    key_arn: str,
    transforms: dict[str, str],
    created,
) -> None:
    """As the StreamingStack defines them: from the dataset's stream, through its transform
    Lambda, with dynamic partitioning into the raw prefixes (the local endpoint's Firehose
    service delivers by this definition)."""
    existing = set(firehose.list_delivery_streams()["DeliveryStreamNames"])
    for ds in platform.stream_datasets:
        name = names.delivery_stream(ds.name)
        if name in existing:
            continue
        stream_arn = kinesis.describe_stream_summary(StreamName=names.stream(ds.name))[
            "StreamDescriptionSummary"
        ]["StreamARN"]
        role = ensure_role(iam, names.firehose_role(ds.name), "firehose.amazonaws.com")
        firehose.create_delivery_stream(
            DeliveryStreamName=name,
            DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": role},
            ExtendedS3DestinationConfiguration={
                "RoleARN": role,
                "BucketARN": f"arn:aws:s3:::{names.raw_bucket}",
                "Prefix": layout.firehose_prefix(ds.name),
                "ErrorOutputPrefix": layout.firehose_error_prefix(ds.name),
                "CompressionFormat": "GZIP",
                "FileExtension": layout.RAW_STREAM_FILE_EXTENSION,
                "BufferingHints": {
                    "SizeInMBs": settings.firehose.buffer_mib,
                    "IntervalInSeconds": settings.firehose.buffer_seconds,
                },
                "EncryptionConfiguration": {"KMSEncryptionConfig": {"AWSKMSKeyARN": key_arn}},
                "DynamicPartitioningConfiguration": {
                    "Enabled": True,
                    "RetryOptions": {"DurationInSeconds": 300},
                },
                "ProcessingConfiguration": {
                    "Enabled": True,
                    "Processors": [
                        {
                            "Type": "Lambda",
                            "Parameters": [
                                {
                                    "ParameterName": "LambdaArn",
                                    "ParameterValue": transforms[ds.name],
                                },
                                {"ParameterName": "NumberOfRetries", "ParameterValue": "3"},
                                {"ParameterName": "BufferSizeInMBs", "ParameterValue": "1"},
                                {
                                    "ParameterName": "BufferIntervalInSeconds",
                                    "ParameterValue": "60",
                                },
                            ],
                        }
                    ],
                },
            },
        )
        created["delivery_stream"].append(name)


def ensure_role(iam, name: str, service: str, created=None) -> str:
    """An IAM role `service` may assume (moto checks a function's role exists); its ARN."""
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
        if created is not None:
            created["role"].append(name)
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
            "Arn"
        ]


def lambda_code(function: str, platform: Platform, build_dir: Path) -> bytes:
    """A function's deployment package: the staged folder the stacks deploy as its asset
    (dataplatform.bundle.stage_lambda), zipped deterministically."""
    import io
    import zipfile

    from dataplatform.bundle import stage_lambda

    folder = stage_lambda(function, platform, build_dir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), (1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def ensure_function(
    clients: Clients,
    names: Names,
    *,
    function: str,
    role: str,
    code: bytes,
    environment: dict[str, str],
    timeout: int,
    memory: int,
    key_arn: str,
    created=None,
) -> str:
    """A Lambda function as the stacks define it (Python, handler.handler, its package and
    environment); its code and settings brought up to date when they changed. Its ARN."""
    import base64
    import hashlib

    lambdas = clients("lambda")
    role_arn = ensure_role(clients("iam"), role, "lambda.amazonaws.com", created)
    settings = {
        "Role": role_arn,
        "Handler": "handler.handler",
        "Runtime": "python3.12",
        "Timeout": timeout,
        "MemorySize": memory,
        "Environment": {"Variables": environment},
        "KMSKeyArn": key_arn,
    }
    try:
        current = lambdas.get_function(FunctionName=function)["Configuration"]
    except lambdas.exceptions.ResourceNotFoundException:
        arn = lambdas.create_function(FunctionName=function, Code={"ZipFile": code}, **settings)[
            "FunctionArn"
        ]
        if created is not None:
            created["lambda_function"].append(function)
        return arn
    sha = base64.b64encode(hashlib.sha256(code).digest()).decode()
    if current.get("CodeSha256") != sha:
        lambdas.update_function_code(FunctionName=function, ZipFile=code)
    if (current.get("Environment") or {}).get("Variables") != environment or current.get(
        "Timeout"
    ) != timeout:
        lambdas.update_function_configuration(FunctionName=function, **settings)
    return current["FunctionArn"]


def _ensure_catalog(
    glue, platform: Platform, settings: Environment, names: Names, key_arn: str, created
) -> None:
    from dataplatform.jobs.curate_run import GLUE_TEMP_PREFIX, default_arguments

    databases = {d["Name"] for d in glue.get_databases()["DatabaseList"]}
    for zone in DATABASE_ZONES:
        if names.database(zone) not in databases:
            glue.create_database(
                DatabaseInput={
                    "Name": names.database(zone),
                    "Description": f"{names.prefix}: {zone} zone",
                    "LocationUri": f"s3://{names.bucket(zone)}/",
                }
            )
            created["database"].append(names.database(zone))

    configurations = {
        c["Name"] for c in glue.get_security_configurations()["SecurityConfigurations"]
    }
    if names.security_configuration not in configurations:
        glue.create_security_configuration(
            Name=names.security_configuration,
            EncryptionConfiguration={
                "S3Encryption": [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": key_arn}],
                "CloudWatchEncryption": {
                    "CloudWatchEncryptionMode": "SSE-KMS",
                    "KmsKeyArn": key_arn,
                },
                "JobBookmarksEncryption": {
                    "JobBookmarksEncryptionMode": "CSE-KMS",
                    "KmsKeyArn": key_arn,
                },
            },
        )
        created["security_configuration"].append(names.security_configuration)

    role_arn = f"arn:aws:iam::{names.account}:role/"
    crawlers = set(glue.list_crawlers()["CrawlerNames"])
    jobs = set(glue.list_jobs()["JobNames"])
    for ds in platform.datasets:
        for database, table_input in (
            (names.raw_database, raw_table_input(ds, names)),
            (names.curated_database, curated_table_input(ds, names)),
            (names.curated_database, quarantine_table_input(ds, names)),
        ):
            try:
                glue.get_table(DatabaseName=database, Name=table_input["Name"])
                glue.update_table(DatabaseName=database, TableInput=table_input)
            except glue.exceptions.EntityNotFoundException:
                glue.create_table(DatabaseName=database, TableInput=table_input)
                created["table"].append(f"{database}.{table_input['Name']}")
        crawler = names.crawler(ds.name)
        if crawler not in crawlers:
            schedule = settings.glue.crawler_schedule
            glue.create_crawler(
                Name=crawler,
                Role=role_arn + names.crawler_role(ds.name),
                DatabaseName=names.raw_database,
                Targets={
                    "S3Targets": [{"Path": f"s3://{names.raw_bucket}/{layout.raw_prefix(ds.name)}"}]
                },
                RecrawlPolicy={"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"},
                SchemaChangePolicy={"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"},
                CrawlerSecurityConfiguration=names.security_configuration,
                **({"Schedule": schedule} if schedule else {}),
            )
            created["crawler"].append(crawler)
        job = names.curate_job(ds.name)
        if job not in jobs:
            glue.create_job(
                Name=job,
                Role=role_arn + names.curate_job_role(ds.name),
                Command={
                    "Name": "glueetl",
                    "PythonVersion": "3",
                    "ScriptLocation": f"s3://{names.artifacts_bucket}/"
                    + layout.job_script_key("glue_jobs", "curate.py"),
                },
                DefaultArguments={
                    **default_arguments(ds, names),
                    "--extra-py-files": f"s3://{names.artifacts_bucket}/{layout.LIBRARY_KEY}",
                    "--TempDir": f"s3://{names.artifacts_bucket}/{GLUE_TEMP_PREFIX}{job}/",
                    "--job-bookmark-option": "job-bookmark-disable",
                },
                GlueVersion="5.0",
                WorkerType=settings.glue.worker_type,
                NumberOfWorkers=settings.glue.number_of_workers,
                Timeout=settings.glue.timeout_minutes,
                MaxRetries=1,
                ExecutionProperty={"MaxConcurrentRuns": 1},
                SecurityConfiguration=names.security_configuration,
            )
            created["job"].append(job)


def upload_job_code(s3, names: Names, job_code_dir: Path, key_arn: str) -> list[str]:
    """The job code bundle (dataplatform.bundle.stage_job_code) to the artifacts bucket's
    code/ prefix, where the Glue jobs' script locations point."""
    keys = []
    for path in sorted(p for p in job_code_dir.rglob("*") if p.is_file()):
        key = layout.CODE_PREFIX + path.relative_to(job_code_dir).as_posix()
        s3.put_object(
            Bucket=names.artifacts_bucket,
            Key=key,
            Body=path.read_bytes(),
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=key_arn,
        )
        keys.append(key)
    return keys


def upload_training_source(s3, names: Names, key_arn: str) -> str:
    """training/ as sourcedir.tar.gz where the training jobs' sagemaker_submit_directory
    and the model packages' SAGEMAKER_SUBMIT_DIRECTORY point (the job code's deployment)."""
    from dataplatform.bundle import training_source_bytes

    s3.put_object(
        Bucket=names.artifacts_bucket,
        Key=layout.TRAINING_SOURCE_KEY,
        Body=training_source_bytes(),
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=key_arn,
    )
    return layout.TRAINING_SOURCE_KEY


SAGEMAKER_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": "{account}"}},
        }
    ],
}
# CDK's tags on the subnets of an ec2.Vpc (runtime/aws/training.py finds them by the type)
SUBNET_TYPE_TAG, SUBNET_NAME_TAG = "aws-cdk:subnet-type", "aws-cdk:subnet-name"
SUBNETS = (("public", "Public", 24), ("private", "Private", 22))  # NetworkStack's masks


def ensure_sagemaker_role(iam, names: Names, created=None) -> str:
    """The SageMaker execution role (the MlStack's), trusted by SageMaker in this account
    only; its ARN. Its policies are the stack's business: moto's IAM enforces none."""
    try:
        return iam.get_role(RoleName=names.sagemaker_role)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        pass
    trust = json.loads(json.dumps(SAGEMAKER_TRUST).replace("{account}", names.account))
    arn = iam.create_role(
        RoleName=names.sagemaker_role,
        AssumeRolePolicyDocument=json.dumps(trust),
        Description=f"SageMaker training of {names.prefix}: features -> models",
    )["Role"]["Arn"]
    if created is not None:
        created["iam_role"].append(names.sagemaker_role)
    return arn


def subnet_blocks(cidr: str, zones: int) -> list[tuple[str, str, str]]:
    """(name, type, CIDR) of each subnet, as CDK's ec2.Vpc allocates them: per subnet
    configuration, one block per availability zone, each the next aligned block."""
    import ipaddress

    network = ipaddress.ip_network(cidr)
    at = int(network.network_address)
    blocks = []
    for name, kind, mask in SUBNETS:
        size = 2 ** (32 - mask)
        for zone in range(zones):
            at = (at + size - 1) // size * size
            blocks.append((f"{name}Subnet{zone + 1}", kind, f"{ipaddress.ip_address(at)}/{mask}"))
            at += size
    return blocks


def ensure_network(ec2, platform: Platform, settings: Environment, names: Names, created=None):
    """The VPC tagged Name=`names.vpc` (the NetworkStack's: a public and a private subnet
    per availability zone, tagged as CDK tags them), the training security group (the
    MlStack's) and, when a model is served, the endpoints' (the ServingStack's). Nothing
    runs in them locally: the training code looks them up to send its VpcConfig, which
    the local SageMaker checks. Returns (private subnet ids, {group name: id})."""
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [names.vpc]}])["Vpcs"]
    if vpcs:
        vpc_id = vpcs[0]["VpcId"]
    else:
        vpc_id = ec2.create_vpc(CidrBlock=settings.network.cidr)["Vpc"]["VpcId"]
        ec2.create_tags(Resources=[vpc_id], Tags=[{"Key": "Name", "Value": names.vpc}])
        if created is not None:
            created["vpc"].append(names.vpc)
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    if not subnets:
        zones = [
            z["ZoneName"]
            for z in ec2.describe_availability_zones()["AvailabilityZones"]
            if z.get("State", "available") == "available"
        ][: settings.network.max_azs]
        for name, kind, block in subnet_blocks(settings.network.cidr, len(zones)):
            zone = zones[int(name[-1]) - 1]
            subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock=block, AvailabilityZone=zone)
            ec2.create_tags(
                Resources=[subnet["Subnet"]["SubnetId"]],
                Tags=[
                    {"Key": "Name", "Value": f"{names.stack('network')}/Vpc/{name}"},
                    {"Key": SUBNET_NAME_TAG, "Value": name.split("Subnet")[0]},
                    {"Key": SUBNET_TYPE_TAG, "Value": kind},
                ],
            )
            if created is not None:
                created["subnet"].append(f"{name} {block}")
        subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    private = sorted(
        s["SubnetId"]
        for s in subnets
        if {"Key": SUBNET_TYPE_TAG, "Value": "Private"} in (s.get("Tags") or [])
    )
    wanted = {names.training_security_group: f"{names.prefix} SageMaker training jobs"}
    if any(m.serving for m in platform.models):
        wanted[names.endpoint_security_group] = f"{names.prefix} SageMaker endpoints"
    groups = {}
    for group, description in wanted.items():
        found = ec2.describe_security_groups(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "group-name", "Values": [group]},
            ]
        )["SecurityGroups"]
        if found:
            groups[group] = found[0]["GroupId"]
            continue
        groups[group] = ec2.create_security_group(
            GroupName=group, Description=description, VpcId=vpc_id
        )["GroupId"]
        if created is not None:
            created["security_group"].append(group)
    return private, groups


def _ensure_workgroup(athena, settings: Environment, names: Names, key_arn: str, created) -> None:
    existing = {w["Name"] for w in athena.list_work_groups()["WorkGroups"]}
    if names.workgroup in existing:
        return
    athena.create_work_group(
        Name=names.workgroup,
        Configuration={
            "ResultConfiguration": {
                "OutputLocation": f"s3://{names.athena_results_bucket}/{layout.ATHENA_RESULTS_PREFIX}",
                "EncryptionConfiguration": {"EncryptionOption": "SSE_KMS", "KmsKey": key_arn},
            },
            "EnforceWorkGroupConfiguration": True,
            "PublishCloudWatchMetricsEnabled": True,
            "BytesScannedCutoffPerQuery": settings.athena.bytes_scanned_cutoff,
            "EngineVersion": {"SelectedEngineVersion": "Athena engine version 3"},
        },
    )
    created["workgroup"].append(names.workgroup)


def ensure_alerts_topic(sns, names: Names, key_arn: str, created=None) -> str:
    """The alerts topic (the MonitoringStack's, KMS-encrypted); the pipeline publishes its
    success and failure messages there. Returns the topic ARN."""
    wanted = f":{names.alerts_topic}"
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page.get("Topics", []):
            if topic["TopicArn"].endswith(wanted):
                return topic["TopicArn"]
    arn = sns.create_topic(Name=names.alerts_topic, Attributes={"KmsMasterKeyId": key_arn})[
        "TopicArn"
    ]
    if created is not None:
        created["sns_topic"].append(names.alerts_topic)
    return arn


def ensure_model_package_groups(sagemaker, platform: Platform, names: Names, created=None) -> None:
    """A SageMaker model package group per model of spec/models/ (the MlStack's)."""
    existing = set()
    for page in sagemaker.get_paginator("list_model_package_groups").paginate():
        existing |= {
            g["ModelPackageGroupName"] for g in page.get("ModelPackageGroupSummaryList", [])
        }
    for model in platform.models:
        group = names.model_package_group(model.name)
        if group in existing:
            continue
        sagemaker.create_model_package_group(
            ModelPackageGroupName=group,
            ModelPackageGroupDescription=(model.description or model.name)[:1024],
        )
        if created is not None:
            created["model_package_group"].append(group)


def ensure_serving(
    clients: Clients, names: Names, key_arn: str, created=None, *, alerts_topic: str | None = None
) -> None:
    """What real-time scoring writes to, as the serving stack creates it: the online
    features and scores tables (KMS, TTL on expires_at), the event bus and the rule that
    sends HighChurnRisk events to the interventions queue and to the alerts topic."""
    dynamodb = clients("dynamodb")
    existing = set(dynamodb.list_tables().get("TableNames", []))
    for table in (names.online_features_table, names.scores_table):
        if table in existing:
            continue
        dynamodb.create_table(
            TableName=table,
            KeySchema=[
                {"AttributeName": "customer_id", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "customer_id", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn},
        )
        dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
        if created is not None:
            created["dynamodb_table"].append(table)
    events, sqs = clients("events"), clients("sqs")
    buses = {b["Name"] for b in events.list_event_buses().get("EventBuses", [])}
    if names.event_bus not in buses:
        events.create_event_bus(Name=names.event_bus)
        if created is not None:
            created["event_bus"].append(names.event_bus)
    queue_url = sqs.create_queue(
        QueueName=names.interventions_queue, Attributes={"KmsMasterKeyId": key_arn}
    )["QueueUrl"]  # idempotent with the same attributes
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    rule = names.high_churn_risk_rule
    rules = {r["Name"] for r in events.list_rules(EventBusName=names.event_bus).get("Rules", [])}
    if rule not in rules:
        events.put_rule(
            Name=rule,
            EventBusName=names.event_bus,
            EventPattern=json.dumps(
                {"source": ["dataplatform.scoring"], "detail-type": ["HighChurnRisk"]}
            ),
        )
        if created is not None:
            created["event_rule"].append(rule)
    targets: list[dict] = [{"Id": "interventions", "Arn": queue_arn}]
    if alerts_topic:
        targets.append(
            {
                "Id": "alerts",
                "Arn": alerts_topic,
                "InputTransformer": {
                    "InputPathsMap": {"detail": "$.detail"},
                    "InputTemplate": f'"HighChurnRisk on {names.event_bus}: <detail>"',
                },
            }
        )
    events.put_targets(Rule=rule, EventBusName=names.event_bus, Targets=targets)


def ensure_governance(clients: Clients, platform: Platform, names: Names, created=None) -> None:
    """The governance stack's Lake Formation setup (dataplatform/governance.py): the LF-tags,
    their associations with the databases, tables and PII columns, each persona's role and
    its tag-based grants. The local Athena evaluates these grants for queries signed with a
    persona role's AssumeRole credentials (`dp query --as PERSONA`), as Lake Formation does
    (runtime/local/services/lakeformation.py)."""
    from dataplatform import governance

    described = governance.describe(platform, names)
    iam, lf = clients("iam"), clients("lakeformation")
    for tag in described.tags:
        lf.create_lf_tag(TagKey=tag.key, TagValues=list(tag.values))

    def tagged(resource: dict, tags: dict[str, str]) -> None:
        failures = lf.add_lf_tags_to_resource(
            Resource=resource, LFTags=[{"TagKey": k, "TagValues": [v]} for k, v in tags.items()]
        ).get("Failures")
        if failures:
            raise RuntimeError(f"Lake Formation refused the tags of {resource}: {failures}")

    for database in described.databases:
        tagged(
            {"Database": {"Name": database.name}},
            {governance.ZONE_TAG: database.zone, governance.PII_TAG: governance.NOT_PII},
        )
    for table in described.tables:
        tagged(
            {"Table": {"DatabaseName": table.database, "Name": table.name}},
            {governance.DOMAIN_TAG: table.domain, governance.PII_TAG: governance.NOT_PII},
        )
        if table.pii_columns:
            tagged(
                {
                    "TableWithColumns": {
                        "DatabaseName": table.database,
                        "Name": table.name,
                        "ColumnNames": list(table.pii_columns),
                    }
                },
                {governance.PII_TAG: governance.PII},
            )
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{names.account}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    for access in described.personas:
        try:
            role_arn = iam.get_role(RoleName=access.role_name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            role_arn = iam.create_role(
                RoleName=access.role_name,
                AssumeRolePolicyDocument=trust,
                Description=f"persona {access.name}: {access.persona.description}"[:1000],
            )["Role"]["Arn"]
            if created is not None:
                created["persona_role"].append(access.role_name)
        for grant in access.grants:
            lf.grant_permissions(
                Principal={"DataLakePrincipalIdentifier": role_arn},
                Resource={
                    "LFTagPolicy": {
                        "ResourceType": grant.resource_type,
                        "Expression": [
                            {"TagKey": c.key, "TagValues": list(c.values)} for c in grant.expression
                        ],
                    }
                },
                Permissions=list(grant.permissions),
            )


def ensure_scorer(
    clients: Clients,
    platform: Platform,
    names: Names,
    model,
    key_arn: str,
    build_dir: Path,
    created=None,
) -> None:
    """A served model's stream scorer as the serving stack defines it: the scorer Lambda
    (lambdas/stream_scorer, with the stack's environment), its enhanced fan-out consumer of
    the stream and its on-failure queue. Its event source mapping is made when the model
    is first served (`scorer_mapping`): before an endpoint serves the model, every batch
    would fail and be given up."""
    serving = model.serving
    ensure_function(
        clients,
        names,
        function=names.scorer_function(model.name),
        role=names.scorer_role(model.name),
        code=lambda_code("stream_scorer", platform, build_dir),
        environment={
            "MODEL_NAME": model.name,
            "ENDPOINT_NAME": names.endpoint(model.name),
            "FEATURES_TABLE": names.online_features_table,
            "SCORES_TABLE": names.scores_table,
            "EVENT_BUS_NAME": names.event_bus,
            "THRESHOLD": str(serving.threshold),
            "ACTION": serving.action,
            "DATASET": serving.stream,
            "SCORES_STREAM": names.stream(serving.scores_dataset) if serving.scores_dataset else "",
        },
        timeout=120,
        memory=512,
        key_arn=key_arn,
        created=created,
    )
    clients("sqs").create_queue(
        QueueName=names.scorer_failures_queue(model.name), Attributes={"KmsMasterKeyId": key_arn}
    )
    kinesis = clients("kinesis")
    stream_arn = kinesis.describe_stream_summary(StreamName=names.stream(serving.stream))[
        "StreamDescriptionSummary"
    ]["StreamARN"]
    consumers = kinesis.list_stream_consumers(StreamARN=stream_arn).get("Consumers", [])
    if names.stream_consumer(model.name) not in {c["ConsumerName"] for c in consumers}:
        kinesis.register_stream_consumer(
            StreamARN=stream_arn, ConsumerName=names.stream_consumer(model.name)
        )
        if created is not None:
            created["stream_consumer"].append(names.stream_consumer(model.name))


def ensure_deployer(
    clients: Clients,
    platform: Platform,
    names: Names,
    model,
    key_arn: str,
    build_dir: Path,
    created=None,
) -> None:
    """A served model's endpoint deployer as the serving stack makes it: the deployer Lambda
    (lambdas/endpoint_deployer) with the environment the stack gives it
    (dataplatform/serving.py, from what is provisioned here), and the default bus's rule
    that invokes it when one of the model's packages is approved (the local SageMaker puts
    that event, as SageMaker does)."""
    from dataplatform.runtime.aws.training import find_network
    from dataplatform.serving import deployer_environment

    ec2 = clients("ec2")
    subnets, _ = find_network(ec2, names)
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [names.endpoint_security_group]}]
    )["SecurityGroups"]
    arn = ensure_function(
        clients,
        names,
        function=names.deployer_function(model.name),
        role=names.deployer_role(model.name),
        code=lambda_code("endpoint_deployer", platform, build_dir),
        environment=deployer_environment(
            model,
            names,
            role_arn=ensure_sagemaker_role(clients("iam"), names),
            subnet_ids=subnets,
            security_group_id=groups[0]["GroupId"] if groups else "",
            models_bucket=names.models_bucket,
            key_arn=key_arn,
        ),
        timeout=900,
        memory=256,
        key_arn=key_arn,
        created=created,
    )
    events = clients("events")
    rule = names.approval_rule(model.name)
    events.put_rule(
        Name=rule,
        EventPattern=json.dumps(
            {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Package State Change"],
                "detail": {
                    "ModelPackageGroupName": [names.model_package_group(model.name)],
                    "ModelApprovalStatus": ["Approved"],
                },
            }
        ),
    )
    events.put_targets(Rule=rule, Targets=[{"Id": "deployer", "Arn": arn}])


def scorer_mapping(clients: Clients, names: Names, model) -> dict:
    """The scorer's event source mapping on its consumer (the serving stack's settings:
    from the stream's start, partial batch responses, bisection, bounded retries, the
    on-failure queue), made if it does not exist yet. Its description."""
    from dataplatform.online.scorer import BATCH_SIZE, MAX_RETRIES

    lambdas, kinesis, sqs = clients("lambda"), clients("kinesis"), clients("sqs")
    function = names.scorer_function(model.name)
    existing = lambdas.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
    if existing:
        return existing[0]
    stream_arn = kinesis.describe_stream_summary(StreamName=names.stream(model.serving.stream))[
        "StreamDescriptionSummary"
    ]["StreamARN"]
    consumer = kinesis.describe_stream_consumer(
        StreamARN=stream_arn, ConsumerName=names.stream_consumer(model.name)
    )["ConsumerDescription"]["ConsumerARN"]
    queue_url = sqs.get_queue_url(QueueName=names.scorer_failures_queue(model.name))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return lambdas.create_event_source_mapping(
        FunctionName=function,
        EventSourceArn=consumer,
        StartingPosition="TRIM_HORIZON",
        BatchSize=BATCH_SIZE,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=MAX_RETRIES,
        ParallelizationFactor=1,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )


def ensure_emr_cluster(clients: Clients, settings: Environment, names: Names, created=None) -> str:
    """The environment's long-running EMR cluster, as the EMR stack defines it (its release,
    applications, instance groups with spot task nodes, log URI, roles); the local EMR
    service runs its steps on the local Spark. Its id (the running one, if any)."""
    emr, iam = clients("emr"), clients("iam")
    for page in emr.get_paginator("list_clusters").paginate(
        ClusterStates=["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"]
    ):
        for cluster in page.get("Clusters", []):
            if cluster.get("Name") == names.emr_cluster:
                return cluster["Id"]
    service_role = ensure_role(iam, names.emr_service_role, "elasticmapreduce.amazonaws.com")
    ensure_role(iam, names.emr_instance_role, "ec2.amazonaws.com")
    e = settings.emr
    groups = [
        {
            "Name": "Master",
            "InstanceRole": "MASTER",
            "Market": "ON_DEMAND",
            "InstanceType": e.master_instance_type,
            "InstanceCount": 1,
        },
        {
            "Name": "Core",
            "InstanceRole": "CORE",
            "Market": "ON_DEMAND",
            "InstanceType": e.core_instance_type,
            "InstanceCount": e.core_instance_count,
        },
    ]
    if e.task_instance_count:
        groups.append(
            {
                "Name": "Task",
                "InstanceRole": "TASK",
                "Market": "SPOT",
                "InstanceType": e.task_instance_type,
                "InstanceCount": e.task_instance_count,
            }
        )
    cluster_id = emr.run_job_flow(
        Name=names.emr_cluster,
        ReleaseLabel=e.release_label,
        LogUri=f"s3://{names.artifacts_bucket}/{layout.EMR_LOG_PREFIX}",
        Applications=[{"Name": a} for a in e.applications],
        Instances={"InstanceGroups": groups, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole=names.emr_instance_profile,
        ServiceRole=service_role,
        VisibleToAllUsers=True,
        Tags=[
            {"Key": "project", "Value": names.project},
            {"Key": "environment", "Value": names.env},
        ],
    )["JobFlowId"]
    if created is not None:
        created["emr_cluster"].append(f"{names.emr_cluster} ({cluster_id})")
    return cluster_id


def describe(payload: dict) -> str:
    return json.dumps(payload, indent=1, default=str)
