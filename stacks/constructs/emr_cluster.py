"""EMR on EC2, defined once: a security profile and a compute profile, combined into
either a long-running cluster (CloudFormation) or the definition Step Functions uses to
create transient clusters (EmrCreateCluster). Both read the same two objects, so a
pipeline's cluster cannot drift from the interactive one.

- `EmrSecurity` (construct): security configuration (EMRFS SSE-KMS and local disks with
  the lake key, in-transit TLS per environment, IMDSv2), the EMR service role, the EC2
  instance role and profile scoped to the lake's prefixes, tables and key, the three
  EMR-managed security groups, the private subnets and the log location.
- `EmrCompute` (plain object from the environment's `emr` settings): release, applications,
  MASTER/CORE (on-demand, gp3)/TASK (spot) instance groups, managed scaling limits,
  auto-termination and the Spark/Hive classifications.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration, Size, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_emr as emr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import layout
from dataplatform.jobs import iceberg
from dataplatform.naming import TRANSIENT_CLUSTER_TAG, Names
from dataplatform.spec import EmrSettings
from stacks.constructs.dataset_tables import catalog_arn
from stacks.constructs.lake import Lake
from stacks.constructs.nag import arn_token

# AmazonEMRServicePolicy_v2 lets EMR use only subnets and security groups carrying this tag.
EMR_MANAGED_TAG = ("for-use-with-amazon-emr-managed-policies", "true")

GLUE_METASTORE_FACTORY = "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
# EMR 7 ships Python 3.9 and 3.11; the dataplatform library is tested with 3.11.
PYSPARK_PYTHON = "/usr/bin/python3.11"
SPARK_DEFAULTS = {
    # Executors come and go with the work; EMR runs the external shuffle service.
    "spark.dynamicAllocation.enabled": "true",
    "spark.shuffle.service.enabled": "true",
    # Adaptive query execution: coalesce small shuffle partitions, split skewed joins.
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.adaptive.skewJoin.enabled": "true",
    # Same semantics as the local and Glue runs: UTC days, overwrite only written partitions.
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    # Iceberg's SQL (MERGE, CALL, time travel) for the curated Iceberg tables; the jars come
    # with the iceberg-defaults classification below.
    "spark.sql.extensions": iceberg.EXTENSIONS,
}
INSTANCE_GROUP_ROLES = ("MASTER", "CORE", "TASK")


@dataclass(frozen=True)
class InstanceGroup:
    role: str  # MASTER | CORE | TASK
    instance_type: str
    count: int
    market: str  # ON_DEMAND | SPOT
    ebs_gib: int | None  # gp3 volume per instance; None = the instance type's default


@dataclass(frozen=True)
class EmrCompute:
    """What the cluster runs and on how many machines, from the environment's settings."""

    release_label: str
    applications: tuple[str, ...]
    instance_groups: tuple[InstanceGroup, ...]
    min_capacity: int
    max_capacity: int
    max_on_demand_capacity: int
    max_core_capacity: int
    idle_timeout: Duration

    @classmethod
    def from_settings(cls, settings: EmrSettings) -> EmrCompute:
        groups = [
            InstanceGroup("MASTER", settings.master_instance_type, 1, "ON_DEMAND", None),
            InstanceGroup(
                "CORE",
                settings.core_instance_type,
                settings.core_instance_count,
                "ON_DEMAND",
                settings.core_ebs_gib,
            ),
        ]
        if settings.task_instance_count > 0:
            groups.append(
                InstanceGroup(
                    "TASK", settings.task_instance_type, settings.task_instance_count, "SPOT", None
                )
            )
        return cls(
            release_label=settings.release_label,
            applications=settings.applications,
            instance_groups=tuple(groups),
            min_capacity=settings.min_capacity,
            max_capacity=settings.max_capacity,
            max_on_demand_capacity=settings.max_on_demand_capacity,
            # Core nodes hold HDFS and stay fixed; scaling adds and removes task nodes.
            max_core_capacity=settings.core_instance_count,
            idle_timeout=Duration.minutes(settings.idle_timeout_minutes),
        )

    def group(self, role: str) -> InstanceGroup | None:
        return next((g for g in self.instance_groups if g.role == role), None)

    def required_group(self, role: str) -> InstanceGroup:
        """A group every cluster has (MASTER, CORE: from_settings always makes both)."""
        found = self.group(role)
        if found is None:
            raise ValueError(f"the EMR compute profile has no {role} instance group")
        return found

    def configurations(self) -> list[dict]:
        """EMR classifications (API shape: Classification, Properties, Configurations)."""
        configs: list[dict] = [
            {"Classification": "spark-defaults", "Properties": dict(SPARK_DEFAULTS)},
            # EMR puts Iceberg (1.10 on EMR 7.12) on Spark's class path only when asked
            {"Classification": "iceberg-defaults", "Properties": {"iceberg.enabled": "true"}},
            {
                "Classification": "spark-hive-site",
                "Properties": {"hive.metastore.client.factory.class": GLUE_METASTORE_FACTORY},
            },
            {
                "Classification": "spark-env",
                "Properties": {},
                "Configurations": [
                    {"Classification": "export", "Properties": {"PYSPARK_PYTHON": PYSPARK_PYTHON}}
                ],
            },
        ]
        if "Hive" in self.applications:
            configs.append(
                {
                    "Classification": "hive-site",
                    "Properties": {"hive.metastore.client.factory.class": GLUE_METASTORE_FACTORY},
                }
            )
        return configs


def security_configuration_document(
    *, key_arn: str, in_transit: bool, tls_certificates_uri: str
) -> dict:
    """The EMR security configuration: at rest always, in transit when asked."""
    encryption: dict = {
        "EnableAtRestEncryption": True,
        "EnableInTransitEncryption": in_transit,
        "AtRestEncryptionConfiguration": {
            "S3EncryptionConfiguration": {"EncryptionMode": "SSE-KMS", "AwsKmsKey": key_arn},
            "LocalDiskEncryptionConfiguration": {
                "EncryptionKeyProviderType": "AwsKms",
                "AwsKmsKey": key_arn,
                "EnableEbsEncryption": True,
            },
        },
    }
    if in_transit:
        encryption["InTransitEncryptionConfiguration"] = {
            "TLSCertificateConfiguration": {
                "CertificateProviderType": "PEM",
                "S3Object": tls_certificates_uri,
            }
        }
    return {
        "EncryptionConfiguration": encryption,
        # IMDSv2 only, one hop: containers on the nodes cannot reach the instance's role.
        "InstanceMetadataServiceConfiguration": {
            "MinimumInstanceMetadataServiceVersion": 2,
            "HttpPutResponseHopLimit": 1,
        },
    }


class EmrSecurity(Construct):
    """Who the cluster is, where it runs and how its data is protected."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        lake: Lake,
        vpc: ec2.IVpc,
        subnets: list[ec2.ISubnet],
        in_transit_encryption: bool,
        feature_tables: tuple[str, ...],
        curated_tables: tuple[str, ...],
    ) -> None:
        super().__init__(scope, construct_id)
        artifacts, curated, features = lake.artifacts, lake.curated, lake.features
        self.subnets = subnets
        self.log_uri = f"s3://{names.artifacts_bucket}/{layout.EMR_LOG_PREFIX}"
        self.key = lake.key
        self.tls_certificates_uri = (
            f"s3://{names.artifacts_bucket}/{layout.EMR_TLS_CERTIFICATES_KEY}"
        )

        # --- security groups: EMR adds the rules it needs to EMR-managed groups itself.
        def security_group(
            cid: str, description: str, allow_all_outbound: bool
        ) -> ec2.SecurityGroup:
            group = ec2.SecurityGroup(
                self, cid, vpc=vpc, description=description, allow_all_outbound=allow_all_outbound
            )
            Tags.of(group).add(*EMR_MANAGED_TAG)
            return group

        self.master_security_group = security_group(
            "MasterSecurityGroup", f"{names.prefix} EMR primary node (EMR-managed rules)", True
        )
        self.worker_security_group = security_group(
            "WorkerSecurityGroup",
            f"{names.prefix} EMR core and task nodes (EMR-managed rules)",
            True,
        )
        self.service_access_security_group = security_group(
            "ServiceAccessSecurityGroup",
            f"{names.prefix} EMR service access in private subnets (EMR-managed rules)",
            False,
        )

        # --- the EC2 instance role: the lake prefixes, tables and key the steps use.
        self.instance_role = iam.Role(
            self,
            "InstanceRole",
            role_name=names.emr_instance_role,
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=f"EMR nodes of {names.prefix}: curated -> features steps",
        )
        features_db = names.features_database
        curated_db = names.curated_database

        def table_arn(database: str, table: str) -> str:
            return (
                f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:table/{database}/{table}"
            )

        def database_arn(database: str) -> str:
            return f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:database/{database}"

        statements = [
            (
                "ReadCurated",
                ["s3:GetObject"],
                [curated.arn_for_objects(f"{layout.curated_prefix(t)}*") for t in curated_tables],
            ),
            (
                "WriteFeatures",
                ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                [features.arn_for_objects("*")],
            ),
            (
                "ReadCodeAndCertificates",
                ["s3:GetObject"],
                [
                    artifacts.arn_for_objects(f"{layout.CODE_PREFIX}*"),
                    artifacts.arn_for_objects(layout.EMR_TLS_CERTIFICATES_KEY),
                ],
            ),
            (
                "WriteLogs",
                ["s3:PutObject", "s3:GetObject"],
                [artifacts.arn_for_objects(f"{layout.EMR_LOG_PREFIX}*")],
            ),
            (
                "ListBuckets",
                ["s3:ListBucket", "s3:GetBucketLocation"],
                [curated.bucket_arn, features.bucket_arn, artifacts.bucket_arn],
            ),
            (
                "UseLakeKey",
                [
                    "kms:Decrypt",
                    "kms:Encrypt",
                    "kms:GenerateDataKey",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:DescribeKey",
                ],
                [lake.key.key_arn],
            ),
            (
                "ReadCuratedCatalog",
                [
                    "glue:GetDatabase",
                    "glue:GetDatabases",
                    "glue:GetTable",
                    "glue:GetTables",
                    "glue:GetPartition",
                    "glue:GetPartitions",
                    "glue:BatchGetPartition",
                ],
                [
                    catalog_arn(),
                    database_arn(curated_db),
                    database_arn("default"),
                    *[table_arn(curated_db, t) for t in curated_tables],
                ],
            ),
            (
                "WriteFeaturesCatalog",
                [
                    "glue:GetDatabase",
                    "glue:GetTable",
                    "glue:GetTables",
                    "glue:CreateTable",
                    "glue:UpdateTable",
                    "glue:GetPartition",
                    "glue:GetPartitions",
                    "glue:BatchGetPartition",
                    "glue:CreatePartition",
                    "glue:BatchCreatePartition",
                    "glue:UpdatePartition",
                    "glue:BatchUpdatePartition",
                    "glue:DeletePartition",
                    "glue:BatchDeletePartition",
                ],
                [catalog_arn(), database_arn(features_db), table_arn(features_db, "*")],
            ),
        ]
        for sid, actions, resources in statements:
            self.instance_role.add_to_policy(
                iam.PolicyStatement(sid=sid, actions=actions, resources=resources)
            )
        self.instance_profile = iam.CfnInstanceProfile(
            self,
            "InstanceProfile",
            instance_profile_name=names.emr_instance_profile,
            roles=[self.instance_role.role_name],
        )

        # --- the EMR service role: AWS's v2 policy acts only on resources tagged for it.
        self.service_role = iam.Role(
            self,
            "ServiceRole",
            role_name=names.emr_service_role,
            assumed_by=iam.ServicePrincipal(
                "elasticmapreduce.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:elasticmapreduce:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"
                    },
                },
            ),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AmazonEMRServicePolicy_v2"
                )
            ],
            description=f"EMR service role of {names.prefix}",
        )
        self.service_role.add_to_policy(
            iam.PolicyStatement(
                sid="PassTheInstanceRole",
                actions=["iam:PassRole"],
                resources=[self.instance_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            )
        )
        self.service_role.add_to_policy(
            iam.PolicyStatement(
                sid="EncryptLocalDisks",
                actions=[
                    "kms:CreateGrant",
                    "kms:ListGrants",
                    "kms:RevokeGrant",
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:DescribeKey",
                ],
                resources=[lake.key.key_arn],
            )
        )

        self.security_configuration = emr.CfnSecurityConfiguration(
            self,
            "SecurityConfiguration",
            name=names.emr_security_configuration,
            security_configuration=security_configuration_document(
                key_arn=lake.key.key_arn,
                in_transit=in_transit_encryption,
                tls_certificates_uri=self.tls_certificates_uri,
            ),
        )
        self.in_transit_encryption = in_transit_encryption

        NagSuppressions.add_resource_suppressions(
            self.instance_role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "object keys below the prefixes the steps read and write: each curated "
                    "table's prefix, the code prefix, the EMR log prefix, and the features "
                    "bucket, which only EMR steps write (feature tables from spec/features "
                    "and itemset tables named by runs); partitions and logs are new keys "
                    "on every run",
                    "appliesTo": [
                        *[
                            f"Resource::{arn_token(curated)}/{layout.curated_prefix(t)}*"
                            for t in curated_tables
                        ],
                        f"Resource::{arn_token(features)}/*",
                        f"Resource::{arn_token(artifacts)}/{layout.CODE_PREFIX}*",
                        f"Resource::{arn_token(artifacts)}/{layout.EMR_LOG_PREFIX}*",
                    ],
                },
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "the steps create and update feature and itemset tables (names from "
                    "spec/features and from runs): every table of the features database "
                    f"{features_db} and no other",
                    "appliesTo": [
                        f"Resource::arn:<AWS::Partition>:glue:<AWS::Region>:"
                        f"<AWS::AccountId>:table/{features_db}/*"
                    ],
                },
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.service_role,
            [
                {
                    "id": "AwsSolutions-IAM4",
                    "reason": "AmazonEMRServicePolicy_v2 is AWS's scoped EMR service policy: it acts "
                    "only on EC2 resources tagged for-use-with-amazon-emr-managed-policies="
                    "true (this VPC's private subnets and the three EMR security groups); "
                    "a hand-written copy would drift from what EMR needs",
                    "appliesTo": [
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                        "AmazonEMRServicePolicy_v2"
                    ],
                }
            ],
        )


class EmrClusterDefinition:
    """One security profile + one compute profile -> a long-running cluster or a transient
    cluster task for Step Functions."""

    def __init__(self, security: EmrSecurity, compute: EmrCompute) -> None:
        self.security = security
        self.compute = compute

    # --- long-running (CloudFormation)
    def long_running_cluster(
        self, scope: Construct, construct_id: str, *, name: str
    ) -> emr.CfnCluster:
        sec, comp = self.security, self.compute

        def group(g: InstanceGroup) -> emr.CfnCluster.InstanceGroupConfigProperty:
            ebs = None
            if g.ebs_gib:
                ebs = emr.CfnCluster.EbsConfigurationProperty(
                    ebs_block_device_configs=[
                        emr.CfnCluster.EbsBlockDeviceConfigProperty(
                            volume_specification=emr.CfnCluster.VolumeSpecificationProperty(
                                size_in_gb=g.ebs_gib, volume_type="gp3"
                            ),
                            volumes_per_instance=1,
                        )
                    ],
                    ebs_optimized=True,
                )
            return emr.CfnCluster.InstanceGroupConfigProperty(
                name=g.role.lower(),
                instance_count=g.count,
                instance_type=g.instance_type,
                market=g.market,
                ebs_configuration=ebs,
            )

        task = comp.group("TASK")
        cluster = emr.CfnCluster(
            scope,
            construct_id,
            name=name,
            release_label=comp.release_label,
            applications=[emr.CfnCluster.ApplicationProperty(name=a) for a in comp.applications],
            service_role=sec.service_role.role_arn,
            job_flow_role=sec.instance_profile.ref,
            # By name (not Ref) so cdk-nag can match it; the dependency is added below.
            security_configuration=sec.security_configuration.name,
            log_uri=sec.log_uri,
            log_encryption_kms_key_id=sec.key.key_arn,
            visible_to_all_users=True,
            configurations=[_cfn_configuration(c) for c in comp.configurations()],
            auto_termination_policy=emr.CfnCluster.AutoTerminationPolicyProperty(
                idle_timeout=int(comp.idle_timeout.to_seconds())
            ),
            managed_scaling_policy=emr.CfnCluster.ManagedScalingPolicyProperty(
                compute_limits=emr.CfnCluster.ComputeLimitsProperty(
                    unit_type="Instances",
                    minimum_capacity_units=comp.min_capacity,
                    maximum_capacity_units=comp.max_capacity,
                    maximum_on_demand_capacity_units=comp.max_on_demand_capacity,
                    maximum_core_capacity_units=comp.max_core_capacity,
                )
            ),
            instances=emr.CfnCluster.JobFlowInstancesConfigProperty(
                master_instance_group=group(comp.required_group("MASTER")),
                core_instance_group=group(comp.required_group("CORE")),
                task_instance_groups=[group(task)] if task else None,
                # Instance groups live in one subnet; the first private one.
                ec2_subnet_id=sec.subnets[0].subnet_id,
                emr_managed_master_security_group=sec.master_security_group.security_group_id,
                emr_managed_slave_security_group=sec.worker_security_group.security_group_id,
                service_access_security_group=sec.service_access_security_group.security_group_id,
                keep_job_flow_alive_when_no_steps=True,
                termination_protected=False,
                unhealthy_node_replacement=True,
            ),
            tags=[{"key": EMR_MANAGED_TAG[0], "value": EMR_MANAGED_TAG[1]}],
        )
        cluster.node.add_dependency(sec.instance_profile)
        cluster.node.add_dependency(sec.security_configuration)
        cluster.node.add_dependency(sec.service_role)
        cluster.node.add_dependency(sec.instance_role)
        rules = [
            {
                "id": "AwsSolutions-EMR4",
                "reason": "false positive: the security configuration enables local disk "
                "encryption (EncryptionConfiguration.AtRestEncryptionConfiguration."
                "LocalDiskEncryptionConfiguration, AwsKms with the lake key, EBS "
                "included); cdk-nag 2.38 looks for it at the document's top level, not "
                "under EncryptionConfiguration where EMR expects it "
                "(tests/infra/test_emr.py asserts the document)",
            },
            {
                "id": "AwsSolutions-EMR6",
                "reason": "no SSH by design: no EC2 key pair, nodes in private subnets, work is "
                "submitted through the EMR API (dp emr run, Step Functions) under IAM; "
                "Kerberos would add a KDC to run for no interactive user",
            },
        ]
        if sec.in_transit_encryption:
            rules.append(
                {
                    "id": "AwsSolutions-EMR5",
                    "reason": "false positive: in-transit encryption is enabled with PEM "
                    "certificates under EncryptionConfiguration; cdk-nag 2.38 "
                    "looks for it at the document's top level",
                }
            )
        else:
            rules.append(
                {
                    "id": "AwsSolutions-EMR5",
                    "reason": "in-transit TLS is off in this environment by its spec "
                    "(emr.in_transit_encryption: false, no certificates to "
                    "manage in dev); traffic stays between EMR security groups "
                    "in private subnets, and S3 traffic is TLS via the endpoint",
                }
            )
        NagSuppressions.add_resource_suppressions(cluster, rules)
        return cluster

    # --- transient (Step Functions)
    def create_cluster_task(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        tags: dict[str, str],
        result_path: str = "$.cluster",
        **task_props,
    ) -> tasks.EmrCreateCluster:
        """`tags`: the platform's own (Names.tags), which CloudFormation gives the
        long-running cluster but not a request inside a state machine definition."""
        sec, comp = self.security, self.compute
        T = tasks.EmrCreateCluster

        def group(g: InstanceGroup) -> tasks.EmrCreateCluster.InstanceGroupConfigProperty:
            ebs = None
            if g.ebs_gib:
                ebs = T.EbsConfigurationProperty(
                    ebs_optimized=True,
                    ebs_block_device_configs=[
                        T.EbsBlockDeviceConfigProperty(
                            volume_specification=T.VolumeSpecificationProperty(
                                volume_size=Size.gibibytes(g.ebs_gib),
                                volume_type=T.EbsBlockDeviceVolumeType.GP3,
                            ),
                            volumes_per_instance=1,
                        )
                    ],
                )
            return T.InstanceGroupConfigProperty(
                name=g.role.lower(),
                instance_count=g.count,
                instance_type=g.instance_type,
                instance_role=T.InstanceRoleType[g.role],
                market=T.InstanceMarket[g.market],
                ebs_configuration=ebs,
            )

        return tasks.EmrCreateCluster(
            scope,
            construct_id,
            name=name,
            release_label=comp.release_label,
            applications=[T.ApplicationConfigProperty(name=a) for a in comp.applications],
            service_role=sec.service_role,
            cluster_role=sec.instance_role,
            security_configuration=sec.security_configuration.ref,
            log_uri=sec.log_uri,
            visible_to_all_users=True,
            configurations=[_sfn_configuration(c) for c in comp.configurations()],
            auto_termination_policy_idle_timeout=comp.idle_timeout,
            managed_scaling_policy=T.ManagedScalingPolicyProperty(
                compute_limits=T.ManagedScalingComputeLimitsProperty(
                    unit_type=T.ComputeLimitsUnitType.INSTANCES,
                    minimum_capacity_units=comp.min_capacity,
                    maximum_capacity_units=comp.max_capacity,
                    maximum_on_demand_capacity_units=comp.max_on_demand_capacity,
                    maximum_core_capacity_units=comp.max_core_capacity,
                )
            ),
            instances=T.InstancesConfigProperty(
                instance_groups=[group(g) for g in comp.instance_groups],
                ec2_subnet_id=sec.subnets[0].subnet_id,
                emr_managed_master_security_group=sec.master_security_group.security_group_id,
                emr_managed_slave_security_group=sec.worker_security_group.security_group_id,
                service_access_security_group=sec.service_access_security_group.security_group_id,
                termination_protected=False,
            ),
            tags={**tags, EMR_MANAGED_TAG[0]: EMR_MANAGED_TAG[1], TRANSIENT_CLUSTER_TAG: name},
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path=result_path,
            **task_props,
        )


def _cfn_configuration(config: dict) -> emr.CfnCluster.ConfigurationProperty:
    return emr.CfnCluster.ConfigurationProperty(
        classification=config["Classification"],
        configuration_properties=config.get("Properties") or None,
        configurations=[_cfn_configuration(c) for c in config.get("Configurations", [])] or None,
    )


def _sfn_configuration(config: dict) -> tasks.EmrCreateCluster.ConfigurationProperty:
    return tasks.EmrCreateCluster.ConfigurationProperty(
        classification=config["Classification"],
        properties=config.get("Properties") or None,
        configurations=[_sfn_configuration(c) for c in config.get("Configurations", [])] or None,
    )
