"""StorageStack: the lake key, the buckets and their protections, in dev and prod."""

from __future__ import annotations

import pytest

from dataplatform.naming import BUCKET_ZONES
from stacks.constructs.lake_key import ADMIN_TAG_KEY
from tests.infra.conftest import dumps

LAKE_ZONES = [z for z in BUCKET_ZONES if z != "access-logs"]


def bucket(synth, zone: str) -> tuple[str, dict]:
    name = synth.names.bucket(zone)
    for lid, res in synth.resources("storage", "AWS::S3::Bucket").items():
        if res["Properties"].get("BucketName") == name:
            return lid, res
    raise AssertionError(f"no bucket named {name}")


def bucket_policy(synth, zone: str) -> list[dict]:
    lid, _ = bucket(synth, zone)
    for res in synth.resources("storage", "AWS::S3::BucketPolicy").values():
        if res["Properties"]["Bucket"] == {"Ref": lid}:
            return res["Properties"]["PolicyDocument"]["Statement"]
    raise AssertionError(f"no policy for bucket {zone}")


def key_statements(synth) -> dict[str, dict]:
    (key,) = synth.resources("storage", "AWS::KMS::Key").values()
    return {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"]}


# --- the key


def test_lake_key_rotates_and_has_its_alias(each_env):
    template = each_env.template("storage")
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.has_resource_properties(
        "AWS::KMS::Alias", {"AliasName": each_env.names.lake_key_alias}
    )


def test_key_policy_lets_only_platform_roles_and_tagged_admins_use_the_key(each_env):
    statements = key_statements(each_env)
    assert set(statements) == {
        "AccountAdministersTheKey",
        "PlatformRolesUseTheKey",
        "TaggedAdminsUseTheKey",
        "CloudWatchLogsOfThisAccount",
    }
    # No statement hands the whole key (kms:*) to the account.
    assert all(s["Action"] != "kms:*" and "kms:*" not in s["Action"] for s in statements.values())
    admin = statements["AccountAdministersTheKey"]
    assert not {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"} & set(admin["Action"])
    use = statements["PlatformRolesUseTheKey"]
    assert "kms:Decrypt" in use["Action"]
    patterns = dumps(use["Condition"]["ArnLike"]["aws:PrincipalArn"])
    assert f":role/{each_env.names.prefix}-*" in patterns
    assert "cfn-exec-role" in patterns
    tagged = statements["TaggedAdminsUseTheKey"]
    assert tagged["Condition"] == {"StringEquals": {f"aws:PrincipalTag/{ADMIN_TAG_KEY}": "true"}}
    logs = statements["CloudWatchLogsOfThisAccount"]
    assert "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]


def test_other_environments_roles_cannot_use_the_key(dev, prod):
    dev_patterns = dumps(key_statements(dev)["PlatformRolesUseTheKey"]["Condition"])
    assert f":role/{prod.names.prefix}-" not in dev_patterns


# --- buckets


def test_every_zone_has_its_bucket_named_by_naming(each_env):
    names = {
        r["Properties"]["BucketName"]
        for r in each_env.resources("storage", "AWS::S3::Bucket").values()
    }
    assert names == {each_env.names.bucket(z) for z in BUCKET_ZONES}


@pytest.mark.parametrize("zone", LAKE_ZONES)
def test_lake_bucket_is_kms_encrypted_private_versioned_and_logged(each_env, zone):
    lid, res = bucket(each_env, zone)
    props = res["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["BucketKeyEnabled"] is True
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "LakeKey" in dumps(rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"])
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    access_logs_lid, _ = bucket(each_env, "access-logs")
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": access_logs_lid}


@pytest.mark.parametrize("zone", BUCKET_ZONES)
def test_bucket_policy_refuses_plain_http_and_old_tls(each_env, zone):
    statements = bucket_policy(each_env, zone)
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert any(s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)
    assert any(s.get("Condition") == {"NumericLessThan": {"s3:TlsVersion": 1.2}} for s in denies)


def test_access_logs_bucket_uses_sse_s3_as_server_access_logging_requires(each_env):
    _, res = bucket(each_env, "access-logs")
    (rule,) = res["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert res["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True


@pytest.mark.parametrize("zone", ["raw", "curated", "features", "models"])
def test_phi_tagged_objects_are_denied_to_principals_without_phi_access(each_env, zone):
    (statement,) = [
        s
        for s in bucket_policy(each_env, zone)
        if s.get("Sid") == "DenyPhiObjectsWithoutPhiAccessTag"
    ]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == {"AWS": "*"}
    assert "s3:GetObject" in statement["Action"]
    assert statement["Condition"] == {
        "StringEquals": {"s3:ExistingObjectTag/Classification": "PHI"},
        "StringNotEquals": {"aws:PrincipalTag/phi-access": "true"},
    }


# --- lifecycle


def rules(synth, zone: str) -> dict[str, dict]:
    _, res = bucket(synth, zone)
    return {r["Id"]: r for r in res["Properties"]["LifecycleConfiguration"]["Rules"]}


def test_raw_tiers_to_infrequent_access_then_archive_per_environment(each_env):
    lifecycle = each_env.platform.environment(each_env.env).lifecycle
    tiering = rules(each_env, "raw")["tier-raw-data"]
    assert tiering["Transitions"] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": lifecycle.raw_infrequent_access_days},
        {
            "StorageClass": {
                "GLACIER_IR": "GLACIER_IR",
                "GLACIER": "GLACIER",
                "DEEP_ARCHIVE": "DEEP_ARCHIVE",
            }[lifecycle.raw_archive_storage_class],
            "TransitionInDays": lifecycle.raw_archive_days,
        },
    ]


def test_dev_and_prod_lifecycles_differ_as_their_settings_do(dev, prod):
    assert rules(dev, "raw")["tier-raw-data"] != rules(prod, "raw")["tier-raw-data"]


@pytest.mark.parametrize("zone", LAKE_ZONES)
def test_noncurrent_versions_expire_and_multipart_uploads_are_aborted(each_env, zone):
    lifecycle = each_env.platform.environment(each_env.env).lifecycle
    bucket_rules = rules(each_env, zone)
    assert bucket_rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": lifecycle.noncurrent_version_expiration_days
    }
    assert bucket_rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }


def test_athena_results_expire_after_the_configured_days(each_env):
    lifecycle = each_env.platform.environment(each_env.env).lifecycle
    assert (
        rules(each_env, "athena-results")["expire-query-results"]["ExpirationInDays"]
        == lifecycle.athena_results_expiration_days
        == 30
    )


# --- object lock


def test_object_lock_on_raw_follows_the_environment(each_env):
    settings = each_env.platform.environment(each_env.env).object_lock
    _, raw = bucket(each_env, "raw")
    if settings.enabled:
        assert raw["Properties"]["ObjectLockEnabled"] is True
        assert raw["Properties"]["ObjectLockConfiguration"] == {
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Days": settings.retention_days, "Mode": "GOVERNANCE"}},
        }
    else:
        assert "ObjectLockEnabled" not in raw["Properties"]


def test_prod_locks_raw_and_dev_does_not(dev, prod):
    assert "ObjectLockConfiguration" in bucket(prod, "raw")[1]["Properties"]
    assert "ObjectLockConfiguration" not in bucket(dev, "raw")[1]["Properties"]
    for zone in ("curated", "features"):
        assert "ObjectLockConfiguration" not in bucket(prod, zone)[1]["Properties"]


# --- removal policy: double opt-in


def data_resources(synth):
    return [
        r
        for kind in ("storage", "streaming")
        for r in synth.templates[kind]["Resources"].values()
        if r["Type"] in ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Kinesis::Stream")
    ]


def test_dev_without_the_flag_retains_data_and_warns_how_to_destroy(synth_variant):
    synth = synth_variant("dev", False)
    assert {r["DeletionPolicy"] for r in data_resources(synth)} == {"Retain"}
    assert any("pass -c destroy_data=true" in w for w in synth.warnings("storage"))
    assert not synth.resources("storage", "Custom::S3AutoDeleteObjects")


def test_dev_with_the_flag_destroys_data_and_empties_buckets(synth_variant):
    synth = synth_variant("dev", True)
    assert {r["DeletionPolicy"] for r in data_resources(synth)} == {"Delete"}
    auto_deleted = synth.resources("storage", "Custom::S3AutoDeleteObjects")
    assert len(auto_deleted) == len(BUCKET_ZONES)
    assert not [w for w in synth.warnings("storage") if "RETAIN" in w]


def test_prod_with_the_flag_still_retains_and_says_the_flag_was_ignored(synth_variant):
    synth = synth_variant("prod", True)
    assert {r["DeletionPolicy"] for r in data_resources(synth)} == {"Retain"}
    assert any("destroy_data=true ignored" in w for w in synth.warnings("storage"))
    assert not synth.resources("storage", "Custom::S3AutoDeleteObjects")


def test_prod_without_the_flag_retains_quietly(prod):
    assert {r["DeletionPolicy"] for r in data_resources(prod)} == {"Retain"}
    assert not [w for w in prod.warnings("storage") if "destroy" in w]
