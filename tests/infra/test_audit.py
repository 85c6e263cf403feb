"""AuditStack: the trail (management events, the lake's S3 data events, validation,
multi-region, KMS, CloudWatch Logs), its Object Lock bucket, its key, its log group and the
role CloudTrail writes with, the Glue table over its log files and the named queries.

Every property in dev and prod (each_env); values are read as the account would see them
(tests/contracts/template_values.py resolves references across stacks)."""

from __future__ import annotations

import json

import pytest
import sqlglot

from dataplatform import audit
from dataplatform.naming import Names
from stacks.audit import INPUT_FORMAT, OUTPUT_FORMAT, SERDE, advanced_event_selectors
from tests.contracts.template_values import ACCOUNT, Assembly
from tests.infra.conftest import STACK_KINDS, Synth

KIND = "audit"


# ----------------------------------------------------------------------------- reading


def assembly(synth: Synth) -> Assembly:
    return Assembly(synth.templates, synth.names.region)


def props(synth: Synth, lid: str, kind: str = KIND) -> dict:
    return assembly(synth).props(kind, lid)


def only(synth: Synth, type_: str) -> tuple[str, dict]:
    found = synth.resources(KIND, type_)
    assert len(found) == 1, (type_, list(found))
    ((lid, resource),) = found.items()
    return lid, resource


def arn_of(synth: Synth, lid: str, kind: str = KIND) -> str:
    return assembly(synth).resolve(kind, {"Fn::GetAtt": [lid, "Arn"]})


def settings(synth: Synth):
    return synth.platform.environment(synth.env).audit


def trail_arn(synth: Synth) -> str:
    return f"arn:aws:cloudtrail:{synth.names.region}:{ACCOUNT}:trail/{synth.names.trail}"


def log_group_arn(synth: Synth) -> str:
    n = synth.names
    return f"arn:aws:logs:{n.region}:{ACCOUNT}:log-group:{n.audit_log_group}"


def audit_key_arn(synth: Synth) -> str:
    (alias,) = synth.resources(KIND, "AWS::KMS::Alias").values()
    assert alias["Properties"]["AliasName"] == synth.names.audit_key_alias
    return arn_of(synth, alias["Properties"]["TargetKeyId"]["Fn::GetAtt"][0])


def bucket(synth: Synth) -> tuple[str, dict]:
    lid, _ = only(synth, "AWS::S3::Bucket")
    return lid, props(synth, lid)


def sorted_statements(statements: list[dict]) -> list[str]:
    return sorted(json.dumps(s, sort_keys=True) for s in statements)


# ----------------------------------------------------------------------------- the stack


def test_the_audit_stack_is_one_of_the_platforms_stacks(each_env):
    assert "audit" in STACK_KINDS
    stack = each_env.stacks.audit
    assert stack.stack_name == each_env.names.stack("audit")
    assert stack in each_env.stacks.all
    # the catalog's encryption settings exist before the audit table; the named queries
    # live in the analytics stack's workgroup
    deps = {d.stack_name for d in stack.dependencies}
    assert {each_env.names.stack("catalog"), each_env.names.stack("analytics")} <= deps


# ----------------------------------------------------------------------------- the key


def test_the_audit_key_rotates_and_its_policy_admits_exactly_who_needs_it(each_env):
    lid, key = only(each_env, "AWS::KMS::Key")
    p = props(each_env, lid)
    assert p["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    region = each_env.names.region
    statements = {s["Sid"]: s for s in p["KeyPolicy"]["Statement"]}
    assert set(statements) == {
        "AccountAdministersTheKey",
        "CloudTrailEncryptsThisTrailsLogs",
        "CloudTrailDescribesTheKey",
        "CloudWatchLogsOfTheTrailsLogGroup",
        "TaggedAdminsReadTheTrailThroughS3",
    }
    root = {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    admin = statements["AccountAdministersTheKey"]
    assert admin["Principal"] == root and "Condition" not in admin
    # administer, never use
    assert not {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:*"} & set(
        admin["Action"]
    )
    assert statements["CloudTrailEncryptsThisTrailsLogs"] == {
        "Sid": "CloudTrailEncryptsThisTrailsLogs",
        "Effect": "Allow",
        "Principal": {"Service": "cloudtrail.amazonaws.com"},
        "Action": "kms:GenerateDataKey*",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:SourceArn": trail_arn(each_env)},
            "StringLike": {
                "kms:EncryptionContext:aws:cloudtrail:arn": f"arn:aws:cloudtrail:*:{ACCOUNT}:trail/*"
            },
        },
    }
    assert statements["CloudTrailDescribesTheKey"] == {
        "Sid": "CloudTrailDescribesTheKey",
        "Effect": "Allow",
        "Principal": {"Service": "cloudtrail.amazonaws.com"},
        "Action": "kms:DescribeKey",
        "Resource": "*",
        "Condition": {"StringEquals": {"aws:SourceArn": trail_arn(each_env)}},
    }
    logs = statements["CloudWatchLogsOfTheTrailsLogGroup"]
    assert logs["Principal"] == {"Service": f"logs.{region}.amazonaws.com"}
    assert logs["Condition"] == {
        "ArnEquals": {"kms:EncryptionContext:aws:logs:arn": log_group_arn(each_env)}
    }
    assert statements["TaggedAdminsReadTheTrailThroughS3"] == {
        "Sid": "TaggedAdminsReadTheTrailThroughS3",
        "Effect": "Allow",
        "Principal": root,
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {
            "StringEquals": {
                "aws:PrincipalTag/dataplatform-admin": "true",
                "kms:ViaService": f"s3.{region}.amazonaws.com",
            }
        },
    }
    # nobody else: no `kms:*` for the root, no unconditioned use
    for s in statements.values():
        assert s["Effect"] == "Allow"
        assert s["Action"] != "kms:*"


def test_the_audit_key_is_not_the_lake_key(each_env):
    lake_aliases = [
        r["Properties"]["AliasName"]
        for r in each_env.resources("storage", "AWS::KMS::Alias").values()
    ]
    assert each_env.names.audit_key_alias not in lake_aliases
    assert audit_key_arn(each_env).startswith(f"arn:aws:kms:{each_env.names.region}:{ACCOUNT}:key/")


# ----------------------------------------------------------------------------- the bucket


def test_the_trail_bucket_is_encrypted_locked_versioned_private_and_logged(each_env):
    lid, p = bucket(each_env)
    s = settings(each_env)
    n = each_env.names
    assert p["BucketName"] == n.audit_bucket
    assert p["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {
                "BucketKeyEnabled": True,
                "ServerSideEncryptionByDefault": {
                    "KMSMasterKeyID": audit_key_arn(each_env),
                    "SSEAlgorithm": "aws:kms",
                },
            }
        ]
    }
    assert p["ObjectLockEnabled"] is True
    assert p["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Days": s.log_retention_days, "Mode": s.object_lock_mode}},
    }
    assert p["VersioningConfiguration"] == {"Status": "Enabled"}
    assert p["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert p["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    # server access logs go to the platform's access-logs bucket, as the lake buckets' do
    assert p["LoggingConfiguration"] == {
        "DestinationBucketName": n.access_logs_bucket,
        "LogFilePrefix": "TrailBucket/",
    }
    rules = {r["Id"]: r for r in p["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-after-retention"] == {
        "Id": "expire-after-retention",
        "ExpirationInDays": s.log_retention_days,
        "Status": "Enabled",
    }
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 1
    }
    assert "AbortIncompleteMultipartUpload" in rules["abort-incomplete-multipart-uploads"]


def test_prod_locks_the_trail_in_compliance_mode_for_years_dev_in_governance(dev, prod):
    assert bucket(prod)[1]["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {
        "Days": 2557,
        "Mode": "COMPLIANCE",
    }
    assert bucket(dev)[1]["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {
        "Days": 30,
        "Mode": "GOVERNANCE",
    }


def test_the_access_logs_bucket_admits_the_trail_buckets_logs(each_env):
    a = assembly(each_env)
    policies = [
        a.props("storage", lid)
        for lid, r in each_env.resources("storage", "AWS::S3::BucketPolicy").items()
    ]
    (policy,) = [p for p in policies if p["Bucket"] == each_env.names.access_logs_bucket]
    statements = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s.get("Principal") == {"Service": "logging.s3.amazonaws.com"}
        and s["Resource"].endswith("/TrailBucket/*")
    ]
    n = each_env.names
    assert statements == [
        {
            "Sid": "S3LogsTheTrailBucket",
            "Action": "s3:PutObject",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Resource": f"arn:aws:s3:::{n.access_logs_bucket}/TrailBucket/*",
            "Condition": {
                "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{n.audit_bucket}"},
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
            },
        }
    ]
    # the reference the trail bucket logs through adds no warning of its own
    assert not [w for w in each_env.warnings(KIND) if "accessLogsPolicyNotAdded" in w]


def test_the_bucket_policy_is_tls_only_and_admits_this_trail_only(each_env):
    lid, p = bucket(each_env)
    (policy_lid, _) = only(each_env, "AWS::S3::BucketPolicy")
    policy = props(each_env, policy_lid)
    assert policy["Bucket"] == p["BucketName"]
    arn = f"arn:aws:s3:::{p['BucketName']}"
    statements = policy["PolicyDocument"]["Statement"]
    deny_all = {"AWS": "*"}
    assert {
        "Action": "s3:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": deny_all,
        "Resource": [arn, f"{arn}/*"],
    } in statements
    assert {
        "Action": "s3:*",
        "Condition": {"NumericLessThan": {"s3:TlsVersion": 1.2}},
        "Effect": "Deny",
        "Principal": deny_all,
        "Resource": [arn, f"{arn}/*"],
    } in statements
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert sorted_statements(allows) == sorted_statements(
        [
            {
                "Sid": "CloudTrailChecksTheBucketAcl",
                "Action": "s3:GetBucketAcl",
                "Condition": {"StringEquals": {"aws:SourceArn": trail_arn(each_env)}},
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Resource": arn,
            },
            {
                "Sid": "CloudTrailWritesThisTrailsLogs",
                "Action": "s3:PutObject",
                "Condition": {
                    "StringEquals": {
                        "s3:x-amz-acl": "bucket-owner-full-control",
                        "aws:SourceArn": trail_arn(each_env),
                    }
                },
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Resource": f"{arn}/AWSLogs/{ACCOUNT}/*",
            },
        ]
    )


@pytest.mark.parametrize("env, destroyed", [("dev", True), ("prod", False)])
def test_the_trail_bucket_follows_the_removal_policy_but_is_never_emptied(
    synth_variant, env, destroyed
):
    synth = synth_variant(env, True)  # -c destroy_data=true
    for type_ in ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Logs::LogGroup"):
        (resource,) = synth.resources(KIND, type_).values()
        assert resource["DeletionPolicy"] == ("Delete" if destroyed else "Retain"), type_
    # Object Lock forbids emptying it before the retention ends: no auto-delete
    types = {r["Type"] for r in synth.templates[KIND]["Resources"].values()}
    assert "Custom::S3AutoDeleteObjects" not in types
    assert "AWS::Lambda::Function" not in types


# ----------------------------------------------------------------------------- the trail


def trail(synth: Synth) -> tuple[str, dict, dict]:
    lid, resource = only(synth, "AWS::CloudTrail::Trail")
    return lid, resource, props(synth, lid)


def test_the_trail_is_multi_region_validated_encrypted_and_sent_to_cloudwatch(each_env):
    lid, resource, p = trail(each_env)
    bucket_lid, b = bucket(each_env)
    log_lid, _ = only(each_env, "AWS::Logs::LogGroup")
    role_lid, _ = only(each_env, "AWS::IAM::Role")
    assert p["TrailName"] == each_env.names.trail
    assert p["IsLogging"] is True
    assert p["IsMultiRegionTrail"] is True
    assert p["IncludeGlobalServiceEvents"] is True
    assert p["EnableLogFileValidation"] is True
    assert p["KMSKeyId"] == audit_key_arn(each_env)
    assert p["S3BucketName"] == b["BucketName"]
    assert "S3KeyPrefix" not in p  # the table's location assumes AWSLogs/ at the root
    assert p["CloudWatchLogsLogGroupArn"] == arn_of(each_env, log_lid)
    assert p["CloudWatchLogsLogGroupArn"] == log_group_arn(each_env) + ":*"
    assert p["CloudWatchLogsRoleArn"] == arn_of(each_env, role_lid)
    # CloudTrail checks the bucket policy, the role and the key when creating the trail
    (policy_lid, _) = only(each_env, "AWS::S3::BucketPolicy")
    (role_policy_lid, _) = only(each_env, "AWS::IAM::Policy")
    (key_lid, _) = only(each_env, "AWS::KMS::Key")
    assert {policy_lid, role_lid, role_policy_lid, key_lid} <= set(resource["DependsOn"])
    assert "IsOrganizationTrail" not in p


def test_the_event_selectors_record_management_events_and_the_lakes_data_buckets(each_env):
    _, _, p = trail(each_env)
    assert "EventSelectors" not in p  # basic and advanced selectors cannot be mixed
    management, data = p["AdvancedEventSelectors"]
    # management events, read and write (no readOnly field)
    assert management["FieldSelectors"] == [{"Field": "eventCategory", "Equals": ["Management"]}]
    n = each_env.names
    lake_data_buckets = [n.bucket(z) for z in ("raw", "curated", "features", "models")] + [
        n.athena_results_bucket
    ]
    fields = {f["Field"]: f for f in data["FieldSelectors"]}
    assert set(fields) == {"eventCategory", "resources.type", "resources.ARN"}  # no readOnly
    assert fields["eventCategory"] == {"Field": "eventCategory", "Equals": ["Data"]}
    assert fields["resources.type"] == {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}
    assert fields["resources.ARN"] == {
        "Field": "resources.ARN",
        "StartsWith": [f"arn:aws:s3:::{name}/" for name in lake_data_buckets],
    }
    # exactly the lake's data buckets: not the code, not the logs, not the trail's own
    named = " ".join(fields["resources.ARN"]["StartsWith"])
    for absent in (n.artifacts_bucket, n.access_logs_bucket, n.audit_bucket):
        assert absent not in named
    # the buckets the storage stack really creates
    storage_buckets = {
        r["Properties"]["BucketName"]
        for r in each_env.resources("storage", "AWS::S3::Bucket").values()
    }
    assert set(lake_data_buckets) <= storage_buckets
    assert data["Name"].endswith("reads and writes")


def test_write_only_data_events_add_the_read_only_selector():
    field_selectors = advanced_event_selectors(["arn:aws:s3:::b/"], write_only=True)[1]
    fields = {f.field: f for f in field_selectors.field_selectors}
    assert fields["readOnly"].equal_to == ["false"]
    assert fields["resources.ARN"].starts_with == ["arn:aws:s3:::b/"]
    reads_too = advanced_event_selectors(["arn:aws:s3:::b/"], write_only=False)[1]
    assert "readOnly" not in {f.field for f in reads_too.field_selectors}


# ----------------------------------------------------------------------------- CloudWatch Logs


def test_the_log_group_is_encrypted_with_the_audit_key_and_kept_per_settings(each_env):
    lid, resource = only(each_env, "AWS::Logs::LogGroup")
    p = props(each_env, lid)
    assert p["LogGroupName"] == each_env.names.audit_log_group
    assert p["KmsKeyId"] == audit_key_arn(each_env)
    assert p["RetentionInDays"] == settings(each_env).cloudwatch_logs_retention_days
    assert resource["DeletionPolicy"] == "Retain"


def test_the_cloudtrail_logs_role_writes_only_the_trails_log_streams(each_env):
    n = each_env.names
    role_lid, _ = only(each_env, "AWS::IAM::Role")
    role = props(each_env, role_lid)
    assert role["RoleName"] == n.cloudtrail_logs_role
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
        }
    ]
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    (policy_lid, _) = only(each_env, "AWS::IAM::Policy")
    policy = props(each_env, policy_lid)
    assert policy["Roles"] == [n.cloudtrail_logs_role]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Sid": "WriteTheTrailsLogStreams",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Effect": "Allow",
            "Resource": f"{log_group_arn(each_env)}:log-stream:{ACCOUNT}_CloudTrail_*",
        }
    ]


def test_the_one_nag_suppression_names_the_log_streams(each_env):
    for lid in (only(each_env, "AWS::IAM::Role")[0], only(each_env, "AWS::IAM::Policy")[0]):
        resource = each_env.templates[KIND]["Resources"][lid]
        (rule,) = resource["Metadata"]["cdk_nag"]["rules_to_suppress"]
        assert rule["id"] == "AwsSolutions-IAM5"
        assert rule["applies_to"] == [
            f"Resource::{log_group_arn(each_env)}:log-stream:{ACCOUNT}_CloudTrail_*"
        ]
    suppressed = [
        lid
        for lid, r in each_env.templates[KIND]["Resources"].items()
        if "cdk_nag" in r.get("Metadata", {})
    ]
    assert len(suppressed) == 2


# ----------------------------------------------------------------------------- the Glue table


def test_the_audit_database_and_the_cloudtrail_table(each_env):
    n = each_env.names
    _, b = bucket(each_env)
    location = f"s3://{b['BucketName']}/AWSLogs/{ACCOUNT}/CloudTrail/"
    db_lid, _ = only(each_env, "AWS::Glue::Database")
    db = props(each_env, db_lid)["DatabaseInput"]
    assert db["Name"] == n.audit_database == f"mldp_{each_env.env}_audit"
    assert db["LocationUri"] == location

    table_lid, table_resource = only(each_env, "AWS::Glue::Table")
    assert db_lid in table_resource["DependsOn"]
    p = props(each_env, table_lid)
    assert p["DatabaseName"] == n.audit_database
    t = p["TableInput"]
    assert t["Name"] == "cloudtrail"
    assert t["TableType"] == "EXTERNAL_TABLE"
    sd = t["StorageDescriptor"]
    assert sd["SerdeInfo"] == {"SerializationLibrary": "com.amazon.emr.hive.serde.CloudTrailSerde"}
    assert SERDE == "com.amazon.emr.hive.serde.CloudTrailSerde"
    assert sd["InputFormat"] == INPUT_FORMAT == "com.amazon.emr.cloudtrail.CloudTrailInputFormat"
    assert sd["OutputFormat"] == OUTPUT_FORMAT
    assert sd["Location"] == location
    columns = {c["Name"]: c["Type"] for c in sd["Columns"]}
    assert list(columns) == [name for name, _ in audit.CLOUDTRAIL_COLUMNS]
    # what the named queries read
    for column in (
        "eventtime",
        "eventsource",
        "eventname",
        "errorcode",
        "readonly",
        "requestparameters",
        "eventcategory",
        "sourceipaddress",
    ):
        assert columns[column] == "string", column
    assert columns["useridentity"].startswith("struct<type:string,principalid:string,arn:string")
    assert (
        "sessionissuer:struct<type:string,principalid:string,arn:string"
        in (columns["useridentity"])
    )
    assert columns["resources"] == "array<struct<arn:string,accountid:string,type:string>>"
    assert t["PartitionKeys"] == [
        {"Name": "region", "Type": "string"},
        {"Name": "timestamp", "Type": "string"},
    ]
    assert t["Parameters"] == {
        "classification": "cloudtrail",
        "EXTERNAL": "TRUE",
        "projection.enabled": "true",
        "projection.region.type": "enum",
        "projection.region.values": f"{n.region},us-east-1",
        "projection.timestamp.type": "date",
        "projection.timestamp.format": "yyyy/MM/dd",
        "projection.timestamp.range": "2025/01/01,NOW",
        "projection.timestamp.interval": "1",
        "projection.timestamp.interval.unit": "DAYS",
        "storage.location.template": location + "${region}/${timestamp}",
    }


def test_projected_regions_add_the_global_service_region_once():
    assert audit.projected_regions("eu-west-1") == ("eu-west-1", "us-east-1")
    assert audit.projected_regions("us-east-1") == ("us-east-1",)


# ----------------------------------------------------------------------------- named queries


def test_the_named_queries_are_in_the_platforms_workgroup_over_the_audit_table(each_env):
    n = each_env.names
    queries = {
        (q := props(each_env, lid))["Name"]: q
        for lid in each_env.resources(KIND, "AWS::Athena::NamedQuery")
    }
    expected = {q.name: q for q in audit.named_queries(each_env.platform.datasets, n)}
    assert (
        set(queries)
        == set(expected)
        == {
            "audit: who read PII-tagged objects in the last 7 days",
            "audit: who wrote or deleted lake objects in the last 7 days",
            "audit: access denied in the last 24 hours",
            "audit: who changed IAM, KMS or Lake Formation settings (last 30 days)",
        }
    )
    for name, q in queries.items():
        assert q["WorkGroup"] == n.workgroup
        assert q["Database"] == n.audit_database
        assert q["QueryString"] == expected[name].sql
        assert f'"{n.audit_database}"."cloudtrail"' in q["QueryString"]
        assert q["Description"] == expected[name].description


# ----------------------------------------------------------------------------- the SQL


NAMES = Names(project="mldp", env="dev", account=ACCOUNT, region="eu-west-1")


@pytest.fixture(scope="module")
def datasets(dev):
    return dev.platform.datasets


def test_pii_locations_are_the_raw_and_curated_prefixes_of_the_pii_datasets(datasets):
    pii = sorted(ds.name for ds in datasets if ds.pii)
    assert pii == ["house_sales", "telecom_events"]
    raw, curated = NAMES.raw_bucket, NAMES.curated_bucket
    assert {
        (loc.dataset, loc.bucket, loc.prefix) for loc in audit.pii_locations(datasets, NAMES)
    } == {
        (ds, bucket_, prefix)
        for ds in pii
        for bucket_, prefix in (
            (raw, f"{ds}/"),
            (raw, f"_errors/{ds}/"),
            (curated, f"{ds}/"),
            (curated, f"_quarantine/{ds}/"),
        )
    }


def test_the_pii_reads_query_names_exactly_the_pii_prefixes(datasets):
    sql = audit.pii_reads_sql(datasets, NAMES)
    for loc in audit.pii_locations(datasets, NAMES):
        assert (
            f"WHEN bucket = '{loc.bucket}' AND starts_with(object_key, '{loc.prefix}') "
            f"THEN '{loc.dataset}'"
        ) in sql
    for ds in datasets:
        if not ds.pii:
            assert f"'{ds.name}/'" not in sql and f"'{ds.name}'" not in sql, ds.name
    assert "eventname IN ('GetObject')" in sql
    assert "interval '7' day" in sql
    assert NAMES.features_bucket not in sql  # raw and curated only


def test_a_spec_without_pii_has_no_pii_query(datasets):
    import dataclasses

    plain = tuple(dataclasses.replace(ds, pii=()) for ds in datasets)
    names = [q.name for q in audit.named_queries(plain, NAMES)]
    assert not any("PII" in name for name in names) and len(names) == 3
    with pytest.raises(ValueError, match="no dataset declares pii"):
        audit.pii_reads_sql(plain, NAMES)


def test_the_writes_query_names_every_audited_bucket():
    sql = audit.lake_writes_sql(NAMES)
    for zone in audit.AUDITED_ZONES:
        assert f"'{NAMES.bucket(zone)}'" in sql
    for name in (NAMES.artifacts_bucket, NAMES.access_logs_bucket):
        assert name not in sql
    for event in ("PutObject", "DeleteObject", "DeleteObjects", "CopyObject"):
        assert f"'{event}'" in sql


def test_the_settings_query_reads_iam_kms_and_lake_formation_writes():
    sql = audit.settings_changes_sql(NAMES)
    assert "'iam.amazonaws.com', 'kms.amazonaws.com', 'lakeformation.amazonaws.com'" in sql
    assert "readonly = 'false'" in sql
    assert "'Decrypt'" in sql  # excluded: KMS's cryptographic calls change nothing


def test_every_query_is_valid_trino_sql_over_the_cloudtrail_table(datasets):
    for q in audit.named_queries(datasets, NAMES):
        tree = sqlglot.parse_one(q.sql, read="trino")
        tables = {(t.db, t.name) for t in tree.find_all(sqlglot.exp.Table)}
        # CTE names appear as tables too; the only real one is the trail's
        real = {t for t in tables if t[0]}
        assert real == {(NAMES.audit_database, "cloudtrail")}, q.name
        # every query prunes partitions by day
        assert '"timestamp" >= date_format(' in q.sql, q.name
        # the columns it reads exist in the table
        known = {name for name, _ in audit.CLOUDTRAIL_COLUMNS} | {"region", "timestamp"}
        derived = {
            "bucket",
            "object_key",
            "dataset",
            "principal",
            "role",
            "reads",
            "events",
            "first_read",
            "last_read",
            "first_event",
            "last_event",
        }
        for column in tree.find_all(sqlglot.exp.Column):
            root = column.parts[0].name if column.parts else column.name
            assert root in known | derived, (q.name, column.sql())
