"""GovernanceStack: who may use what on AWS, from dataplatform/governance.py (the one
description of the grants; the local Athena applies the same one).

- A role per persona of spec/personas.yaml, assumable by the IAM principals the persona
  maps (`principals:`) or else by the account's principals tagged
  `dataplatform-persona=<name>`, for one hour at a time, with least-privilege policies:
  its streams (PutRecord(s) and the lake key through Kinesis), Athena in the platform's
  workgroup, the catalog of its databases, its results prefix, Lake Formation's data
  access, and (training) the ML pipeline, the model registry and the models' prefixes.
  No persona role may read the lake's data prefixes from S3: Lake Formation vends
  credentials for the registered locations, scoped to what its grants allow.
- Lake Formation: the lake's locations registered in hybrid access mode with a data-access
  role of this stack (S3 on exactly those prefixes, the lake key through S3), the LF-tags
  (zone, domain, pii), their associations with the databases, tables and PII columns, the
  persona roles' tag-based grants, and the platform jobs' named grants.

Why the data lake settings (`AWS::LakeFormation::DataLakeSettings`) are not managed here:
they are one account-wide object (its administrators, its default permissions for new
databases and tables), and a stack that sets them replaces whatever the account has,
removing data lake administrators who are not in the template; deleting the stack would
remove them all. The deployer's role (CDK's CloudFormation execution role) must be a data
lake administrator instead, once per account and region (README: Governance on AWS).

Hybrid access mode: the registered locations stay readable by IAM for every principal not
opted in, so the crawlers, curate jobs, EMR steps and SageMaker keep working as before.
There is no CloudFormation resource for `CreateLakeFormationOptIn`, and only a data lake
administrator may call it (Lake Formation's hybrid access limitations), which a custom
resource's Lambda is not: the persona roles are opted in by the administrator after the
deployment, with the commands `dp personas --opt-in` prints (governance.opt_in_commands).
Until then a persona role reads nothing, which fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lakeformation as lf
from cdk_nag import NagSuppressions
from constructs import Construct

from dataplatform import layout
from dataplatform.governance import (
    DATA_LOCATION,
    DATABASE,
    DOMAIN_TAG,
    NOT_PII,
    PII,
    PII_TAG,
    TABLE,
    TABLE_WILDCARD,
    ZONE_TAG,
    DataLocation,
    Governance,
    NamedGrant,
    PersonaAccess,
    TagGrant,
    lf_data_access_role,
)
from dataplatform.naming import Names, pascal_case
from dataplatform.spec import Platform
from stacks.constructs.iam_dependency import wait_for_role_policy
from stacks.constructs.lake import Lake
from stacks.constructs.lake_bucket import LakeBucket
from stacks.constructs.nag import arn_token

# The IAM tag that maps the account's principals to a persona (without `principals:`).
PERSONA_TAG_KEY = "dataplatform-persona"
PERSONA_MAX_SESSION = Duration.hours(1)

ATHENA_ACTIONS = [
    "athena:StartQueryExecution",
    "athena:StopQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:GetQueryRuntimeStatistics",
    "athena:BatchGetQueryExecution",
    "athena:ListQueryExecutions",
    "athena:GetWorkGroup",
    "athena:GetNamedQuery",
    "athena:BatchGetNamedQuery",
    "athena:ListNamedQueries",
]
GLUE_READ_ACTIONS = [
    "glue:GetDatabase",
    "glue:GetDatabases",
    "glue:GetTable",
    "glue:GetTables",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:BatchGetPartition",
]
STREAM_ACTIONS = [
    "kinesis:PutRecord",
    "kinesis:PutRecords",
    "kinesis:DescribeStreamSummary",
    "kinesis:ListShards",
]
REGISTRY_ACTIONS = [
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:ListModelPackages",
    "sagemaker:DescribeModelPackage",
]


def via(service: str) -> dict:
    """A KMS condition: only through this service, in this region."""
    return {"StringEquals": {"kms:ViaService": f"{service}.{Aws.REGION}.amazonaws.com"}}


class GovernanceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        platform: Platform,
        governance: Governance,
        lake: Lake,
        streams: Mapping[str, kinesis.IStream],
        workgroup: str,
        ml_pipeline_arn: str,
        job_roles: Mapping[str, iam.IRole],
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.names, self.governance, self.lake = names, governance, lake
        self.platform = platform
        self.catalog_id = Aws.ACCOUNT_ID

        # --- LF-tags, and their associations with the catalog's databases, tables, columns
        self.lf_tags = {
            tag.key: lf.CfnTag(
                self,
                f"{pascal_case(tag.key)}Tag",
                catalog_id=self.catalog_id,
                tag_key=tag.key,
                tag_values=list(tag.values),
            )
            for tag in governance.tags
        }
        self.associations: list[lf.CfnTagAssociation] = []
        for db in governance.databases:
            self._associate(
                f"{pascal_case(db.zone)}DatabaseTags",
                lf.CfnTagAssociation.ResourceProperty(
                    database=lf.CfnTagAssociation.DatabaseResourceProperty(
                        catalog_id=self.catalog_id, name=db.name
                    )
                ),
                # pii=false on the database: tables created later (the feature tables)
                # inherit it, and so do the columns no association marks PII.
                {ZONE_TAG: db.zone, PII_TAG: NOT_PII},
            )
        for t in governance.tables:
            cid = f"{pascal_case(t.zone)}{pascal_case(t.name)}"
            self._associate(
                f"{cid}TableTags",
                lf.CfnTagAssociation.ResourceProperty(
                    table=lf.CfnTagAssociation.TableResourceProperty(
                        catalog_id=self.catalog_id, database_name=t.database, name=t.name
                    )
                ),
                {DOMAIN_TAG: t.domain, PII_TAG: NOT_PII},
            )
            if t.pii_columns:
                self._associate(
                    f"{cid}PiiColumnTags",
                    lf.CfnTagAssociation.ResourceProperty(
                        table_with_columns=lf.CfnTagAssociation.TableWithColumnsResourceProperty(
                            catalog_id=self.catalog_id,
                            database_name=t.database,
                            name=t.name,
                            column_names=list(t.pii_columns),
                        )
                    ),
                    {PII_TAG: PII},
                )

        # --- the lake's locations, registered in hybrid access mode
        self.data_access_role = self._data_access_role(governance.locations)
        self.registrations = {
            location: lf.CfnResource(
                self,
                f"{pascal_case(location.zone)}{pascal_case(location.prefix.strip('/').replace('/', '_')) or 'Bucket'}Location",
                resource_arn=self._location_arn(location),
                role_arn=self.data_access_role.role_arn,
                use_service_linked_role=False,
                hybrid_access_enabled=True,
            )
            for location in governance.locations
        }
        for registration in self.registrations.values():
            # Lake Formation uses the role as soon as the location is registered
            wait_for_role_policy(registration, self.data_access_role)

        # --- the personas' roles and grants
        self.persona_roles: dict[str, iam.Role] = {}
        self.grants: list[lf.CfnPrincipalPermissions] = []
        for access in governance.personas:
            role = self._persona_role(access, streams, workgroup, ml_pipeline_arn)
            self.persona_roles[access.name] = role
            for i, grant in enumerate(access.grants):
                self._tag_grant(f"{pascal_case(access.name)}Grant{i}", role.role_arn, grant)

        # --- the platform jobs' grants, for exactly their work
        for job in governance.jobs:
            if job.role_name not in job_roles:
                raise ValueError(f"no role {job.role_name} given for the grants of {job.purpose}")
            principal = job_roles[job.role_name].role_arn
            for i, named in enumerate(job.grants):
                self._named_grant(f"{pascal_case(job.key)}Grant{i}", principal, named)

    # ----------------------------------------------------------------------------- LF

    @staticmethod
    def _arn(service: str, resource: str) -> str:
        return f"arn:{Aws.PARTITION}:{service}:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"

    def _associate(self, cid: str, resource, tags: dict[str, str]) -> None:
        association = lf.CfnTagAssociation(
            self,
            cid,
            resource=resource,
            lf_tags=[
                lf.CfnTagAssociation.LFTagPairProperty(
                    catalog_id=self.catalog_id, tag_key=key, tag_values=[value]
                )
                for key, value in tags.items()
            ],
        )
        for key in tags:
            association.node.add_dependency(self.lf_tags[key])
        self.associations.append(association)

    def _bucket(self, zone: str) -> LakeBucket:
        return {"raw": self.lake.raw, "curated": self.lake.curated, "features": self.lake.features}[
            zone
        ]

    def _location_arn(self, location: DataLocation) -> str:
        bucket = self._bucket(location.zone)
        prefix = location.prefix.rstrip("/")
        return f"{bucket.bucket_arn}/{prefix}" if prefix else bucket.bucket_arn

    def _tag_grant(self, cid: str, principal: str, grant: TagGrant) -> None:
        permission = lf.CfnPrincipalPermissions(
            self,
            cid,
            catalog=self.catalog_id,
            principal=lf.CfnPrincipalPermissions.DataLakePrincipalProperty(
                data_lake_principal_identifier=principal
            ),
            resource=lf.CfnPrincipalPermissions.ResourceProperty(
                lf_tag_policy=lf.CfnPrincipalPermissions.LFTagPolicyResourceProperty(
                    catalog_id=self.catalog_id,
                    resource_type=grant.resource_type,
                    expression=[
                        lf.CfnPrincipalPermissions.LFTagProperty(
                            tag_key=c.key, tag_values=list(c.values)
                        )
                        for c in grant.expression
                    ],
                )
            ),
            permissions=list(grant.permissions),
            permissions_with_grant_option=[],
        )
        for condition in grant.expression:
            permission.node.add_dependency(self.lf_tags[condition.key])
        self.grants.append(permission)

    def _named_grant(self, cid: str, principal: str, grant: NamedGrant) -> None:
        P = lf.CfnPrincipalPermissions
        if grant.resource_type == DATABASE:
            resource = P.ResourceProperty(
                database=P.DatabaseResourceProperty(catalog_id=self.catalog_id, name=grant.database)
            )
        elif grant.resource_type == TABLE:
            resource = P.ResourceProperty(
                table=P.TableResourceProperty(
                    catalog_id=self.catalog_id, database_name=grant.database, name=grant.table
                )
            )
        elif grant.resource_type == TABLE_WILDCARD:
            resource = P.ResourceProperty(
                table=P.TableResourceProperty(
                    catalog_id=self.catalog_id, database_name=grant.database, table_wildcard={}
                )
            )
        elif grant.resource_type == DATA_LOCATION:
            assert grant.location is not None
            resource = P.ResourceProperty(
                data_location=P.DataLocationResourceProperty(
                    catalog_id=self.catalog_id, resource_arn=self._location_arn(grant.location)
                )
            )
        else:
            raise ValueError(f"unknown Lake Formation resource type {grant.resource_type!r}")
        permission = P(
            self,
            cid,
            catalog=self.catalog_id,
            principal=P.DataLakePrincipalProperty(data_lake_principal_identifier=principal),
            resource=resource,
            permissions=list(grant.permissions),
            permissions_with_grant_option=[],
        )
        if grant.location is not None:
            permission.node.add_dependency(self.registrations[grant.location])
        self.grants.append(permission)

    def _data_access_role(self, locations: tuple[DataLocation, ...]) -> iam.Role:
        """The role Lake Formation assumes to vend credentials for the registered locations:
        S3 on exactly their objects, listing only below them, the lake key through S3."""
        names, lake = self.names, self.lake
        role = iam.Role(
            self,
            "DataAccessRole",
            role_name=lf_data_access_role(names),
            assumed_by=iam.ServicePrincipal(
                "lakeformation.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            description=f"Lake Formation's access to the registered locations of {names.prefix}",
        )
        objects = [self._bucket(loc.zone).arn_for_objects(f"{loc.prefix}*") for loc in locations]
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadAndWriteTheRegisteredLocations",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=objects,
            )
        )
        for zone in ("raw", "curated", "features"):
            prefixes = [loc.prefix for loc in locations if loc.zone == zone]
            conditions = None
            if "" not in prefixes:
                conditions = {
                    "StringLike": {"s3:prefix": [v for p in prefixes for v in (p, f"{p}*")]}
                }
            role.add_to_policy(
                iam.PolicyStatement(
                    sid=f"List{pascal_case(zone)}Locations",
                    actions=["s3:ListBucket"],
                    resources=[self._bucket(zone).bucket_arn],
                    conditions=conditions,
                )
            )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="UseLakeKeyThroughS3",
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                resources=[lake.key.key_arn],
                conditions=via("s3"),
            )
        )
        NagSuppressions.add_resource_suppressions(
            role,
            [
                {
                    "id": "AwsSolutions-IAM5",
                    "reason": "Lake Formation reads and writes the objects below the registered "
                    "locations only (each dataset's raw, curated and quarantine prefix, the "
                    "features bucket): partitions are new keys on every run",
                    "appliesTo": sorted(
                        {
                            f"Resource::{arn_token(self._bucket(loc.zone))}/{loc.prefix}*"
                            for loc in locations
                        }
                    ),
                }
            ],
            apply_to_children=True,
        )
        return role

    # ----------------------------------------------------------------------------- IAM

    def _persona_role(
        self,
        access: PersonaAccess,
        streams: Mapping[str, kinesis.IStream],
        workgroup: str,
        ml_pipeline_arn: str,
    ) -> iam.Role:
        names, lake = self.names, self.lake
        if access.principals:
            trusted: iam.IPrincipal = iam.CompositePrincipal(
                *(iam.ArnPrincipal(arn) for arn in access.principals)
            )
        else:
            trusted = iam.AccountRootPrincipal().with_conditions(
                {"StringEquals": {f"aws:PrincipalTag/{PERSONA_TAG_KEY}": access.name}}
            )
        role = iam.Role(
            self,
            f"{pascal_case(access.name)}Role",
            role_name=access.role_name,
            assumed_by=trusted,
            max_session_duration=PERSONA_MAX_SESSION,
            description=f"persona {access.name} of {names.prefix} (spec/personas.yaml): "
            + (access.persona.description or access.name)[:900],
        )
        statements: list[iam.PolicyStatement] = []
        wildcards: list[tuple[str, list[str]]] = []

        if access.persona.streams:
            statements.append(
                iam.PolicyStatement(
                    sid="PutRecordsOnItsStreams",
                    actions=STREAM_ACTIONS,
                    resources=[streams[s].stream_arn for s in access.persona.streams],
                )
            )
            statements.append(
                iam.PolicyStatement(
                    sid="UseLakeKeyThroughKinesis",
                    actions=["kms:GenerateDataKey"],
                    resources=[lake.key.key_arn],
                    conditions=via("kinesis"),
                )
            )

        if access.databases:
            results = layout.ATHENA_RESULTS_PREFIX
            statements += [
                iam.PolicyStatement(
                    sid="QueryInThePlatformWorkgroup",
                    actions=ATHENA_ACTIONS,
                    resources=[self._arn("athena", f"workgroup/{workgroup}")],
                ),
                iam.PolicyStatement(
                    sid="ReadTheCatalogOfItsDatabases",
                    actions=GLUE_READ_ACTIONS,
                    resources=[
                        self._arn("glue", "catalog"),
                        *(self._arn("glue", f"database/{db}") for db in access.databases),
                        *(self._arn("glue", f"table/{db}/*") for db in access.databases),
                    ],
                ),
                # GetDataAccess has no resource-level permissions (AWS's action table: no
                # resource types): the grants above decide what Lake Formation vends.
                iam.PolicyStatement(
                    sid="LakeFormationVendsTheData",
                    actions=["lakeformation:GetDataAccess"],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="WriteAndReadQueryResults",
                    actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                    resources=[lake.athena_results.arn_for_objects(f"{results}*")],
                ),
                iam.PolicyStatement(
                    sid="LocateTheResultsBucket",
                    actions=["s3:GetBucketLocation"],
                    resources=[lake.athena_results.bucket_arn],
                ),
                iam.PolicyStatement(
                    sid="ListQueryResults",
                    actions=["s3:ListBucket"],
                    resources=[lake.athena_results.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [results, f"{results}*"]}},
                ),
                iam.PolicyStatement(
                    sid="UseLakeKeyThroughS3",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[lake.key.key_arn],
                    conditions=via("s3"),
                ),
                # The catalog is encrypted with the lake key (CatalogStack).
                iam.PolicyStatement(
                    sid="ReadTheEncryptedCatalog",
                    actions=["kms:Decrypt"],
                    resources=[lake.key.key_arn],
                    conditions=via("glue"),
                ),
            ]
            wildcards.append(
                (
                    "the catalog's tables of the persona's databases: Lake Formation's grants "
                    "decide which tables and columns it sees (tables are created at run time "
                    "too, the EMR steps' feature tables); GetDataAccess has no resource-level "
                    "permissions (AWS's action table lists no resource type)",
                    [
                        *(
                            f"Resource::arn:<AWS::Partition>:glue:<AWS::Region>:<AWS::AccountId>:table/{db}/*"
                            for db in access.databases
                        ),
                        "Resource::*",
                    ],
                )
            )
            wildcards.append(
                (
                    "Athena writes each query's results as new keys below the workgroup's "
                    f"results prefix ({results}), the only prefix of the bucket it may use",
                    [f"Resource::{arn_token(lake.athena_results)}/{results}*"],
                )
            )

        if access.training:
            models = sorted(m.name for m in self.platform.models)
            statements += [
                iam.PolicyStatement(
                    sid="StartTheMlPipeline",
                    actions=["states:StartExecution"],
                    resources=[ml_pipeline_arn],
                ),
                iam.PolicyStatement(
                    sid="FollowTheMlPipeline",
                    actions=["states:DescribeExecution"],
                    resources=[self._arn("states", f"execution:{names.ml_pipeline}:*")],
                ),
                iam.PolicyStatement(
                    sid="ReadTheModelRegistry",
                    actions=REGISTRY_ACTIONS,
                    resources=[
                        *(
                            self._arn(
                                "sagemaker", f"model-package-group/{names.model_package_group(m)}"
                            )
                            for m in models
                        ),
                        *(
                            self._arn(
                                "sagemaker", f"model-package/{names.model_package_group(m)}/*"
                            )
                            for m in models
                        ),
                    ],
                ),
                iam.PolicyStatement(
                    sid="DescribeTrainingJobs",
                    actions=["sagemaker:DescribeTrainingJob"],
                    resources=[
                        self._arn("sagemaker", f"training-job/{names.training_job_prefix(m)}*")
                        for m in models
                    ],
                ),
                iam.PolicyStatement(
                    sid="ReadTheModels",
                    actions=["s3:GetObject"],
                    resources=[
                        lake.models.arn_for_objects(f"{layout.model_prefix(m)}*") for m in models
                    ],
                ),
                iam.PolicyStatement(
                    sid="ListTheModels",
                    actions=["s3:ListBucket"],
                    resources=[lake.models.bucket_arn],
                    conditions={
                        "StringLike": {
                            "s3:prefix": [
                                v
                                for m in models
                                for p in [layout.model_prefix(m)]
                                for v in (p, f"{p}*")
                            ]
                        }
                    },
                ),
            ]
            if not access.databases:
                statements.append(
                    iam.PolicyStatement(
                        sid="UseLakeKeyThroughS3",
                        actions=["kms:Decrypt"],
                        resources=[lake.key.key_arn],
                        conditions=via("s3"),
                    )
                )
            wildcards.append(
                (
                    "executions, model packages and training jobs are named per run below "
                    "the platform's own names (the ML pipeline, each model's package group "
                    "and training job prefix); the models' objects below each model's prefix",
                    [
                        "Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
                        f"execution:{names.ml_pipeline}:*",
                        *(
                            "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                            f"model-package/{names.model_package_group(m)}/*"
                            for m in models
                        ),
                        *(
                            "Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                            f"training-job/{names.training_job_prefix(m)}*"
                            for m in models
                        ),
                        *(
                            f"Resource::{arn_token(lake.models)}/{layout.model_prefix(m)}*"
                            for m in models
                        ),
                    ],
                )
            )

        for statement in statements:
            role.add_to_policy(statement)
        if wildcards:
            NagSuppressions.add_resource_suppressions(
                role,
                [
                    {
                        "id": "AwsSolutions-IAM5",
                        "reason": f"persona {access.name}: {reason}",
                        "appliesTo": applies_to,
                    }
                    for reason, applies_to in wildcards
                ],
                apply_to_children=True,
            )
        return role
