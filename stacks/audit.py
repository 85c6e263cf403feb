"""AuditStack: a CloudTrail trail of the account's management events and of the S3 data
events on the lake's data buckets (reads and writes), delivered to a bucket of its own (SSE-KMS
with the audit key, Object Lock, log file validation, access logs) and to CloudWatch Logs; a
Glue table over the log files (partition projection) and the audit's named queries in the
platform's workgroup."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations, ArnFormat, Aws, Duration, IResolvable, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import audit
from dataplatform.naming import Names
from dataplatform.spec import Dataset, Environment
from stacks.constructs.audit_key import AuditKey
from stacks.constructs.lake import Lake
from stacks.constructs.lake_bucket import LakeBucket
from stacks.constructs.log_group import EncryptedLogGroup
from stacks.constructs.removal import DataRemoval

CLOUDTRAIL = iam.ServicePrincipal("cloudtrail.amazonaws.com")
# The Hive classes Athena reads CloudTrail's log files with (a file is one JSON object whose
# `Records` array holds the events).
SERDE = "com.amazon.emr.hive.serde.CloudTrailSerde"
INPUT_FORMAT = "com.amazon.emr.cloudtrail.CloudTrailInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
# The bucket's construct id, also its prefix in the access-logs bucket (as LakeBucket does).
TRAIL_BUCKET_ID = "TrailBucket"
# CloudTrail names the log streams of a trail's log group <account>_CloudTrail_<region>.
LOG_STREAM_PREFIX = "{account}_CloudTrail_"


class AuditStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        lake: Lake,
        datasets: Sequence[Dataset],
        workgroup: athena.CfnWorkGroup,
        removal: DataRemoval,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal.annotate(self)
        settings_ = settings.audit

        # Built from names, not from the resources: the key and the bucket policy name the
        # trail, and the trail needs both first.
        self.trail_arn = self.format_arn(
            service="cloudtrail", resource="trail", resource_name=names.trail
        )
        log_group_arn = self.format_arn(
            service="logs",
            resource="log-group",
            resource_name=names.audit_log_group,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

        self.key = AuditKey(
            self,
            "AuditKey",
            names=names,
            trail_arn=self.trail_arn,
            log_group_arn=log_group_arn,
            removal_policy=removal.policy,
        )

        # --- the trail's bucket: the lake bucket's defaults, plus Object Lock (every log file
        # is WORM for the retention) and expiry once the retention has passed.
        # The access-logs bucket is the storage stack's: given as a reference, the L2 would
        # add no statement to its policy, given as itself one without aws:SourceArn (it does
        # so for a bucket of another stack). The statement below names this bucket by name.
        access_logs = s3.Bucket.from_bucket_attributes(
            self,
            "AccessLogsReference",
            bucket_name=lake.access_logs.bucket_name,
            bucket_arn=lake.access_logs.bucket_arn,
        )
        self.bucket = LakeBucket(
            self,
            TRAIL_BUCKET_ID,
            bucket_name=names.audit_bucket,
            encryption_key=self.key,
            access_logs_bucket=access_logs,
            removal_policy=removal.policy,
            # Expiry turns a log file into a noncurrent version at the end of its retention;
            # the day after, it is gone.
            noncurrent_version_expiration_days=1,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-after-retention",
                    expiration=Duration.days(settings_.log_retention_days),
                )
            ],
            object_lock_retention_days=settings_.log_retention_days,
            object_lock_mode=settings_.object_lock_mode,
            # Objects under Object Lock cannot be deleted before their retention ends, so no
            # auto-delete: with -c destroy_data=true, deleting the bucket fails while locked
            # log files remain (README: Audit). CloudFormation then keeps the bucket.
            auto_delete_objects=False,
        )
        Annotations.of(self.bucket).acknowledge_warning(
            "@aws-cdk/aws-s3:accessLogsPolicyNotAdded",
            "the trail bucket's log delivery is admitted below, with aws:SourceArn",
        )
        lake.access_logs.add_to_resource_policy(
            iam.PolicyStatement(
                sid="S3LogsTheTrailBucket",
                principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[lake.access_logs.arn_for_objects(f"{TRAIL_BUCKET_ID}/*")],
                conditions={
                    "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:s3:::{names.audit_bucket}"},
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        this_trail = {"aws:SourceArn": self.trail_arn}
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailChecksTheBucketAcl",
                principals=[CLOUDTRAIL],
                actions=["s3:GetBucketAcl"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringEquals": this_trail},
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailWritesThisTrailsLogs",
                principals=[CLOUDTRAIL],
                actions=["s3:PutObject"],
                # log files and digests: AWSLogs/<account>/CloudTrail(-Digest)/...
                resources=[self.bucket.arn_for_objects(f"AWSLogs/{self.account}/*")],
                conditions={
                    "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", **this_trail}
                },
            )
        )

        # --- CloudWatch Logs: the audit key, the environment's retention, a role that may only
        # write the trail's log streams.
        self.log_group = EncryptedLogGroup(
            self,
            "TrailLogGroup",
            log_group_name=names.audit_log_group,
            key=self.key,
            retention_days=settings_.cloudwatch_logs_retention_days,
            removal_policy=removal.policy,
        )
        self.log_group.node.add_dependency(self.key)  # its key policy admits CloudWatch Logs
        self.logs_role = iam.Role(
            self,
            "CloudTrailLogsRole",
            role_name=names.cloudtrail_logs_role,
            assumed_by=CLOUDTRAIL,
            description=f"{names.prefix}: CloudTrail writes the trail's events to "
            f"{names.audit_log_group}",
        )
        streams = self.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{names.audit_log_group}:log-stream:"
            + LOG_STREAM_PREFIX.format(account=self.account)
            + "*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.logs_role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteTheTrailsLogStreams",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[streams],
            )
        )
        NagSuppressions.add_resource_suppressions(
            self.logs_role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "CloudTrail creates one log stream per region of a multi-region "
                    "trail, named <account>_CloudTrail_<region>: the role may write only "
                    "those streams of the trail's own log group",
                    "appliesTo": [f"Resource::{_nag_arn(streams, self)}"],
                }
            ],
            apply_to_children=True,
        )

        # --- the trail. The L2 is given the bucket as a reference (so it adds no policy of
        # its own: the statements above carry aws:SourceArn, its would not) and no log group
        # (its role could write any stream of the group; the one above is scoped).
        self.trail = cloudtrail.Trail(
            self,
            "Trail",
            trail_name=names.trail,
            bucket=s3.Bucket.from_bucket_attributes(
                self,
                "TrailBucketReference",
                bucket_arn=self.bucket.bucket_arn,
                bucket_name=self.bucket.bucket_name,
            ),
            encryption_key=self.key,
            enable_file_validation=True,
            is_multi_region_trail=True,
            include_global_service_events=True,
        )
        cfn_trail: cloudtrail.CfnTrail = self.trail.node.default_child  # type: ignore[assignment]
        cfn_trail.cloud_watch_logs_log_group_arn = self.log_group.log_group_arn
        cfn_trail.cloud_watch_logs_role_arn = self.logs_role.role_arn
        # Escape hatch: the L2 has basic event selectors only; advanced ones scope the data
        # events to the lake's data buckets (and cannot be mixed with basic ones).
        cfn_trail.add_property_deletion_override("EventSelectors")
        cfn_trail.advanced_event_selectors = advanced_event_selectors(
            [lake.bucket(zone).arn_for_objects("") for zone in audit.AUDITED_ZONES],
            write_only=settings_.data_events == "write_only",
        )
        # CloudTrail checks the bucket policy, the key policy and the role when it creates
        # the trail.
        assert self.bucket.policy is not None  # the statements above created it
        cfn_trail.node.add_dependency(self.bucket.policy, self.logs_role, self.key)

        # --- the Glue table over the log files, and the audit's named queries.
        location = f"s3://{self.bucket.bucket_name}/{audit.trail_logs_prefix(self.account)}"
        self.database = glue.CfnDatabase(
            self,
            "AuditDatabase",
            catalog_id=self.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=names.audit_database,
                description=f"{names.prefix}: the CloudTrail trail of the lake ({names.trail})",
                location_uri=location,
            ),
        )
        self.table = glue.CfnTable(
            self,
            "CloudTrailTable",
            catalog_id=self.account,
            database_name=names.audit_database,
            table_input=glue.CfnTable.TableInputProperty(
                name=audit.TABLE,
                description=f"{names.trail}: CloudTrail's log files, one row per event",
                table_type="EXTERNAL_TABLE",
                parameters=table_parameters(location, names.region),
                partition_keys=[
                    glue.CfnTable.ColumnProperty(name="region", type="string"),
                    glue.CfnTable.ColumnProperty(name="timestamp", type="string"),
                ],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[
                        glue.CfnTable.ColumnProperty(name=name, type=type_)
                        for name, type_ in audit.CLOUDTRAIL_COLUMNS
                    ],
                    location=location,
                    input_format=INPUT_FORMAT,
                    output_format=OUTPUT_FORMAT,
                    serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=SERDE),
                ),
            ),
        )
        self.table.node.add_dependency(self.database)

        self.named_queries = {
            q.construct_id: athena.CfnNamedQuery(
                self,
                q.construct_id,
                name=q.name,
                database=names.audit_database,
                work_group=workgroup.ref,
                query_string=q.sql,
                description=q.description,
            )
            for q in audit.named_queries(datasets, names)
        }


def advanced_event_selectors(
    object_arn_prefixes: Sequence[str], *, write_only: bool
) -> list[IResolvable | cloudtrail.CfnTrail.AdvancedEventSelectorProperty]:
    """Management events (read and write) and the S3 object events of these prefixes
    (`arn:...:s3:::<bucket>/`), reads too unless `write_only`."""
    field = cloudtrail.CfnTrail.AdvancedFieldSelectorProperty
    data = [
        field(field="eventCategory", equal_to=["Data"]),
        field(field="resources.type", equal_to=["AWS::S3::Object"]),
        field(field="resources.ARN", starts_with=list(object_arn_prefixes)),
    ]
    if write_only:
        data.append(field(field="readOnly", equal_to=["false"]))
    return [
        cloudtrail.CfnTrail.AdvancedEventSelectorProperty(
            name="Management events, read and write",
            field_selectors=[field(field="eventCategory", equal_to=["Management"])],
        ),
        cloudtrail.CfnTrail.AdvancedEventSelectorProperty(
            name="S3 object events of the lake's data buckets"
            + (", writes only" if write_only else ", reads and writes"),
            field_selectors=data,
        ),
    ]


def table_parameters(location: str, region: str) -> dict[str, str]:
    """Partition projection: Athena computes the partitions (region, day) from these, so the
    table needs no crawler and no ALTER TABLE ADD PARTITION."""
    return {
        "classification": "cloudtrail",
        "EXTERNAL": "TRUE",
        "projection.enabled": "true",
        "projection.region.type": "enum",
        "projection.region.values": ",".join(audit.projected_regions(region)),
        "projection.timestamp.type": "date",
        "projection.timestamp.format": audit.TIMESTAMP_FORMAT,
        "projection.timestamp.range": f"{audit.PROJECTION_START},NOW",
        "projection.timestamp.interval": "1",
        "projection.timestamp.interval.unit": "DAYS",
        "storage.location.template": location + "${region}/${timestamp}",
    }


def _nag_arn(arn: str, stack: Stack) -> str:
    """How cdk-nag spells an ARN built by format_arn in its findings (pseudo parameters as
    <AWS::Partition>, and so on)."""
    resolved = stack.resolve(arn)
    if isinstance(resolved, str):
        return resolved
    parts = resolved["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else f"<{p['Ref']}>" for p in parts)
