"""How each CloudFormation resource type is applied to the local endpoint: the wire calls
CloudFormation's own resource handlers make, with the property names translated where the
template's and the API's differ. Every applier is idempotent: it finds what an earlier
deployment made (by name, or by the physical id recorded for it) and brings it to the
template, or makes it. An applier returns the resource's Ref and the attributes the
templates read with Fn::GetAtt.

A type without an applier is listed by `dp local up` as not applied, with that reason.
DEFERRED: applied later by the local platform itself, at the moment it says.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

from dataplatform.jobs.iceberg import is_iceberg_table
from dataplatform.runtime.local.deploy.model import Context, Out, Pending

Applier = Callable[[Context, Pending], Out]
APPLIERS: dict[str, Applier] = {}

DEFERRED: dict[str, str] = {
    "AWS::Lambda::EventSourceMapping": (
        "deferred: made from this definition when the scorer's model is first in service "
        "(`dp serve`), so that the stream is not scored, failed and given up before a model "
        "answers"
    )
}


def applies(*types: str) -> Callable[[Applier], Applier]:
    def register(function: Applier) -> Applier:
        for type_ in types:
            APPLIERS[type_] = function
        return function

    return register


def code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def tag_list(props: dict) -> list[dict]:
    tags = props.get("Tags") or []
    if isinstance(tags, dict):
        return [{"Key": k, "Value": v} for k, v in tags.items()]
    return list(tags)


def tag_map(props: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tag_list(props)}


def generated_name(r: Pending, limit: int = 64) -> str:
    """A name where the template gives none, as CloudFormation makes one: the stack, the
    logical id and a suffix (here a stable one, from both)."""
    import hashlib

    suffix = hashlib.sha256(f"{r.stack}/{r.logical_id}".encode()).hexdigest()[:12].upper()
    return f"{r.stack}-{r.logical_id}"[: limit - 13] + "-" + suffix


def compact(mapping: dict) -> dict:
    return {k: v for k, v in mapping.items() if v is not None}


def _exists(call: Callable[[], Any]) -> bool:
    try:
        call()
        return True
    except Exception as exc:  # noqa: BLE001 (the service's NotFound, whatever its code)
        if "NotFound" in code(exc) or "Malformed" in code(exc):
            return False
        raise


def _recorded(r: Pending, describe: Callable[[str], Any], attribute: str = "") -> str | None:
    """The id an earlier deployment recorded for this resource (its physical id, or one of
    its attributes), if the resource is still there; None to make it."""
    if r.previous is None:
        return None
    recorded = r.previous.attributes.get(attribute) if attribute else r.previous.physical_id
    return recorded if recorded and _exists(lambda: describe(recorded)) else None


# ----------------------------------------------------------------------------- KMS


@applies("AWS::KMS::Key")
def kms_key(d: Context, r: Pending) -> Out:
    kms = d.clients("kms")
    key_id = _recorded(r, lambda i: kms.describe_key(KeyId=i))
    if key_id is None:
        key_id = kms.create_key(
            **compact(
                {
                    "Description": r.props.get("Description"),
                    "Policy": json.dumps(r.props["KeyPolicy"]) if "KeyPolicy" in r.props else None,
                    "KeyUsage": r.props.get("KeyUsage"),
                    "KeySpec": r.props.get("KeySpec"),
                    "Tags": [
                        {"TagKey": t["Key"], "TagValue": t["Value"]} for t in tag_list(r.props)
                    ]
                    or None,
                }
            )
        )["KeyMetadata"]["KeyId"]
    elif "KeyPolicy" in r.props:
        kms.put_key_policy(
            KeyId=key_id, PolicyName="default", Policy=json.dumps(r.props["KeyPolicy"])
        )
    if r.props.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=key_id)
    arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    return Out(key_id, {"Arn": arn, "KeyId": key_id})


@applies("AWS::KMS::Alias")
def kms_alias(d: Context, r: Pending) -> Out:
    kms = d.clients("kms")
    name, target = r.props["AliasName"], r.props["TargetKeyId"]
    key_id = kms.describe_key(KeyId=target)["KeyMetadata"]["KeyId"]
    aliases = {a["AliasName"]: a for a in kms.list_aliases()["Aliases"]}
    if name not in aliases:
        kms.create_alias(AliasName=name, TargetKeyId=key_id)
    elif aliases[name].get("TargetKeyId") != key_id:
        kms.update_alias(AliasName=name, TargetKeyId=key_id)
    return Out(name)


# ----------------------------------------------------------------------------- S3


def _lifecycle_rule(rule: dict) -> dict:
    """A CloudFormation lifecycle rule (ExpirationInDays, TransitionInDays, Prefix) as
    the S3 API's."""
    out: dict[str, Any] = {"ID": rule.get("Id"), "Status": rule["Status"]}
    if "Prefix" in rule:
        out["Filter"] = {"Prefix": rule["Prefix"]}
    elif "TagFilters" in rule:
        out["Filter"] = {"And": {"Tags": rule["TagFilters"]}}
    else:
        out["Filter"] = {"Prefix": ""}
    if "ExpirationInDays" in rule or "ExpirationDate" in rule:
        out["Expiration"] = compact(
            {"Days": rule.get("ExpirationInDays"), "Date": rule.get("ExpirationDate")}
        )
    if "ExpiredObjectDeleteMarker" in rule:
        out.setdefault("Expiration", {})["ExpiredObjectDeleteMarker"] = rule[
            "ExpiredObjectDeleteMarker"
        ]
    transitions = list(rule.get("Transitions", []))
    if "Transition" in rule:
        transitions.append(rule["Transition"])
    if transitions:
        out["Transitions"] = [
            compact(
                {
                    "Days": t.get("TransitionInDays"),
                    "Date": t.get("TransitionDate"),
                    "StorageClass": t["StorageClass"],
                }
            )
            for t in transitions
        ]
    noncurrent = rule.get("NoncurrentVersionExpiration") or (
        {"NoncurrentDays": rule["NoncurrentVersionExpirationInDays"]}
        if "NoncurrentVersionExpirationInDays" in rule
        else None
    )
    if noncurrent:
        out["NoncurrentVersionExpiration"] = compact(
            {
                "NoncurrentDays": noncurrent.get("NoncurrentDays"),
                "NewerNoncurrentVersions": noncurrent.get("NewerNoncurrentVersions"),
            }
        )
    if rule.get("NoncurrentVersionTransitions"):
        out["NoncurrentVersionTransitions"] = [
            compact(
                {"NoncurrentDays": t.get("TransitionInDays"), "StorageClass": t["StorageClass"]}
            )
            for t in rule["NoncurrentVersionTransitions"]
        ]
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    return compact(out)


@applies("AWS::S3::Bucket")
def s3_bucket(d: Context, r: Pending) -> Out:
    s3 = d.clients("s3")
    p = r.props
    name = p.get("BucketName") or generated_name(r, 63).lower()
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if name not in existing:
        kwargs: dict[str, Any] = {"Bucket": name}
        if d.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": d.region}
        if p.get("ObjectLockEnabled"):
            kwargs["ObjectLockEnabledForBucket"] = True
        s3.create_bucket(**kwargs)
    if "BucketEncryption" in p:
        rules = [
            compact(
                {
                    "ApplyServerSideEncryptionByDefault": rule.get("ServerSideEncryptionByDefault"),
                    "BucketKeyEnabled": rule.get("BucketKeyEnabled"),
                }
            )
            for rule in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "VersioningConfiguration" in p:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]}
        )
    if "PublicAccessBlockConfiguration" in p:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"]
        )
    if "LifecycleConfiguration" in p:
        s3.put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={
                "Rules": [_lifecycle_rule(rule) for rule in p["LifecycleConfiguration"]["Rules"]]
            },
        )
    if "OwnershipControls" in p:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=p["OwnershipControls"])
    if "LoggingConfiguration" in p:
        # Not switched on locally, and said so: moto writes one log object per request into
        # the target bucket, in the request (every S3 call of a Spark job doubled), and a
        # restart's replay writes them again under new names.
        d.report.notes.append(
            f"{r.stack}/{r.logical_id} (AWS::S3::Bucket {name}): server access logging to "
            f"{p['LoggingConfiguration'].get('DestinationBucketName', name)} not switched on "
            "locally: moto would write a log object per request, inside the request"
        )
    if p.get("ObjectLockConfiguration", {}).get("Rule"):
        s3.put_object_lock_configuration(
            Bucket=name,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": p["ObjectLockConfiguration"]["Rule"],
            },
        )
    if "NotificationConfiguration" in p:
        notification = p["NotificationConfiguration"]
        configuration: dict[str, Any] = {}
        if "EventBridgeConfiguration" in notification:
            configuration["EventBridgeConfiguration"] = {}
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration=configuration
        )
    if tag_list(p):
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tag_list(p)})
    return Out(
        name,
        {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{d.region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{d.region}.amazonaws.com",
        },
    )


@applies("AWS::S3::BucketPolicy")
def s3_bucket_policy(d: Context, r: Pending) -> Out:
    """The policy's Allow statements (the logging service's, CloudTrail's). Its Deny
    statements are left out, and said so: moto evaluates the TLS-only ones
    (aws:SecureTransport, s3:TlsVersion) and tag conditions as a deny of every request,
    which would lock the bucket (docs/moto.md)."""
    s3 = d.clients("s3")
    document = dict(r.props["PolicyDocument"])
    statements = document.get("Statement", [])
    allows = [s for s in statements if s.get("Effect") == "Allow"]
    denies = [s for s in statements if s.get("Effect") != "Allow"]
    if denies:
        d.report.notes.append(
            f"{r.stack}/{r.logical_id} (AWS::S3::BucketPolicy): applied without its "
            f"{len(denies)} Deny statement(s) "
            f"({', '.join(s.get('Sid') or _condition_keys(s) for s in denies)}): moto "
            "evaluates them as a deny of every request"
        )
    if allows:
        s3.put_bucket_policy(
            Bucket=r.props["Bucket"], Policy=json.dumps({**document, "Statement": allows})
        )
    return Out(f"{r.props['Bucket']}-policy")


def _condition_keys(statement: dict) -> str:
    keys = sorted({k for condition in statement.get("Condition", {}).values() for k in condition})
    return "/".join(keys) or "unconditional"


# ----------------------------------------------------------------------------- IAM


def _json(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document)


@applies("AWS::IAM::Role")
def iam_role(d: Context, r: Pending) -> Out:
    iam = d.clients("iam")
    p = r.props
    name = p.get("RoleName") or generated_name(r)
    path = p.get("Path", "/")
    try:
        role = iam.get_role(RoleName=name)["Role"]
        iam.update_assume_role_policy(
            RoleName=name, PolicyDocument=_json(p["AssumeRolePolicyDocument"])
        )
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(
            **compact(
                {
                    "RoleName": name,
                    "Path": path,
                    "AssumeRolePolicyDocument": _json(p["AssumeRolePolicyDocument"]),
                    "Description": p.get("Description"),
                    "MaxSessionDuration": p.get("MaxSessionDuration"),
                    "PermissionsBoundary": p.get("PermissionsBoundary"),
                    "Tags": tag_list(p) or None,
                }
            )
        )["Role"]
    for policy in p.get("ManagedPolicyArns", []):
        try:
            iam.attach_role_policy(RoleName=name, PolicyArn=policy)
        except iam.exceptions.NoSuchEntityException:
            # moto knows AWS's managed policies of its release only; the role works
            # without (moto's IAM enforces no policy), and a newer one is still named.
            iam.tag_role(
                RoleName=name,
                Tags=[{"Key": "dp:managed-policy-unknown-locally", "Value": policy[-256:]}],
            )
    for policy in p.get("Policies", []):
        iam.put_role_policy(
            RoleName=name,
            PolicyName=policy["PolicyName"],
            PolicyDocument=_json(policy["PolicyDocument"]),
        )
    return Out(name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})


@applies("AWS::IAM::Policy")
def iam_policy(d: Context, r: Pending) -> Out:
    iam = d.clients("iam")
    p = r.props
    document = _json(p["PolicyDocument"])
    for role in p.get("Roles", []):
        iam.put_role_policy(RoleName=role, PolicyName=p["PolicyName"], PolicyDocument=document)
    for user in p.get("Users", []):
        iam.put_user_policy(UserName=user, PolicyName=p["PolicyName"], PolicyDocument=document)
    for group in p.get("Groups", []):
        iam.put_group_policy(GroupName=group, PolicyName=p["PolicyName"], PolicyDocument=document)
    return Out(f"{r.stack}-{r.logical_id}")


@applies("AWS::IAM::ManagedPolicy")
def iam_managed_policy(d: Context, r: Pending) -> Out:
    iam = d.clients("iam")
    p = r.props
    name = p.get("ManagedPolicyName") or generated_name(r, 128)
    arn = f"arn:aws:iam::{d.account}:policy{p.get('Path', '/')}{name}"
    try:
        iam.get_policy(PolicyArn=arn)
        iam.create_policy_version(
            PolicyArn=arn, PolicyDocument=_json(p["PolicyDocument"]), SetAsDefault=True
        )
    except iam.exceptions.NoSuchEntityException:
        iam.create_policy(
            PolicyName=name, Path=p.get("Path", "/"), PolicyDocument=_json(p["PolicyDocument"])
        )
    for role in p.get("Roles", []):
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    return Out(arn)


@applies("AWS::IAM::InstanceProfile")
def iam_instance_profile(d: Context, r: Pending) -> Out:
    iam = d.clients("iam")
    p = r.props
    name = p.get("InstanceProfileName") or generated_name(r, 128)
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        profile = iam.create_instance_profile(InstanceProfileName=name, Path=p.get("Path", "/"))[
            "InstanceProfile"
        ]
    present = {role["RoleName"] for role in profile.get("Roles", [])}
    for role in p.get("Roles", []):
        if role not in present:
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
    return Out(name, {"Arn": profile["Arn"]})


# ----------------------------------------------------------------------------- Kinesis, Firehose


@applies("AWS::Kinesis::Stream")
def kinesis_stream(d: Context, r: Pending) -> Out:
    kinesis = d.clients("kinesis")
    p = r.props
    name = p.get("Name") or generated_name(r, 128)
    mode = (p.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
    try:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except kinesis.exceptions.ResourceNotFoundException:
        kwargs: dict[str, Any] = {"StreamName": name, "StreamModeDetails": {"StreamMode": mode}}
        if mode == "PROVISIONED":
            kwargs["ShardCount"] = int(p.get("ShardCount", 1))
        kinesis.create_stream(**kwargs)
        kinesis.get_waiter("stream_exists").wait(
            StreamName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
        )
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    encryption = p.get("StreamEncryption")
    if encryption and summary.get("EncryptionType") != encryption["EncryptionType"]:
        kinesis.start_stream_encryption(
            StreamName=name, EncryptionType=encryption["EncryptionType"], KeyId=encryption["KeyId"]
        )
    hours = int(p.get("RetentionPeriodHours", 24))
    if hours > summary.get("RetentionPeriodHours", 24):
        kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=hours)
    if tag_map(p):
        kinesis.add_tags_to_stream(StreamName=name, Tags=tag_map(p))
    return Out(name, {"Arn": summary["StreamARN"]})


@applies("AWS::Kinesis::StreamConsumer")
def kinesis_consumer(d: Context, r: Pending) -> Out:
    kinesis = d.clients("kinesis")
    stream, name = r.props["StreamARN"], r.props["ConsumerName"]
    try:
        consumer = kinesis.describe_stream_consumer(StreamARN=stream, ConsumerName=name)[
            "ConsumerDescription"
        ]
    except kinesis.exceptions.ResourceNotFoundException:
        consumer = kinesis.register_stream_consumer(StreamARN=stream, ConsumerName=name)["Consumer"]
    arn = consumer["ConsumerARN"]
    return Out(
        arn,
        {
            "ConsumerARN": arn,
            "ConsumerName": name,
            "StreamARN": stream,
            "ConsumerStatus": "ACTIVE",
            "ConsumerCreationTimestamp": str(consumer.get("ConsumerCreationTimestamp", "")),
        },
    )


@applies("AWS::KinesisFirehose::DeliveryStream")
def delivery_stream(d: Context, r: Pending) -> Out:
    firehose = d.clients("firehose")
    p = dict(r.props)
    name = p.pop("DeliveryStreamName", None) or generated_name(r)
    p.pop("Tags", None)
    encryption = p.pop("DeliveryStreamEncryptionConfigurationInput", None)
    try:
        arn = firehose.describe_delivery_stream(DeliveryStreamName=name)[
            "DeliveryStreamDescription"
        ]["DeliveryStreamARN"]
    except firehose.exceptions.ResourceNotFoundException:
        arn = None
    if arn is not None and r.previous is not None:  # changed: made again from the template
        firehose.delete_delivery_stream(DeliveryStreamName=name)
        arn = None
    if arn is None:
        arn = firehose.create_delivery_stream(
            DeliveryStreamName=name,
            **p,
            **({"DeliveryStreamEncryptionConfigurationInput": encryption} if encryption else {}),
            **({"Tags": tag_list(r.props)} if tag_list(r.props) else {}),
        )["DeliveryStreamARN"]
    return Out(name, {"Arn": arn})


# ----------------------------------------------------------------------------- Lambda


def _function_code(d: Context, code: dict) -> dict:
    if "S3Bucket" in code:
        d.publish(code["S3Bucket"], code["S3Key"])
        return compact(
            {
                "S3Bucket": code["S3Bucket"],
                "S3Key": code["S3Key"],
                "S3ObjectVersion": code.get("S3ObjectVersion"),
            }
        )
    if "ZipFile" in code:  # inline source: CloudFormation zips it as index.<ext>
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("index.py", code["ZipFile"])
        return {"ZipFile": buffer.getvalue()}
    return code


@applies("AWS::Lambda::Function")
def lambda_function(d: Context, r: Pending) -> Out:
    lambdas = d.clients("lambda")
    p = r.props
    name = p.get("FunctionName") or generated_name(r)
    configuration = compact(
        {
            "Role": p["Role"],
            "Handler": p.get("Handler"),
            "Runtime": p.get("Runtime"),
            "Timeout": p.get("Timeout"),
            "MemorySize": p.get("MemorySize"),
            "Environment": p.get("Environment"),
            "KMSKeyArn": p.get("KmsKeyArn"),
            "Description": p.get("Description"),
            "Layers": p.get("Layers"),
            "DeadLetterConfig": p.get("DeadLetterConfig"),
            "TracingConfig": p.get("TracingConfig"),
            "EphemeralStorage": p.get("EphemeralStorage"),
            "LoggingConfig": p.get("LoggingConfig"),
        }
    )
    source = _function_code(d, p["Code"])
    try:
        lambdas.get_function(FunctionName=name)
    except lambdas.exceptions.ResourceNotFoundException:
        function = lambdas.create_function(
            FunctionName=name,
            Code=source,
            **configuration,
            **compact({"Architectures": p.get("Architectures"), "Tags": tag_map(p) or None}),
        )
    else:
        lambdas.update_function_code(FunctionName=name, **source)
        function = lambdas.update_function_configuration(FunctionName=name, **configuration)
    if p.get("ReservedConcurrentExecutions") is not None:
        lambdas.put_function_concurrency(
            FunctionName=name, ReservedConcurrentExecutions=p["ReservedConcurrentExecutions"]
        )
    return Out(name, {"Arn": function["FunctionArn"]})


@applies("AWS::Lambda::Permission")
def lambda_permission(d: Context, r: Pending) -> Out:
    lambdas = d.clients("lambda")
    p = r.props
    statement = f"{r.logical_id}"[:100]
    try:
        lambdas.remove_permission(FunctionName=p["FunctionName"], StatementId=statement)
    except lambdas.exceptions.ResourceNotFoundException:
        pass
    lambdas.add_permission(
        **compact(
            {
                "FunctionName": p["FunctionName"],
                "StatementId": statement,
                "Action": p["Action"],
                "Principal": p["Principal"],
                "SourceArn": p.get("SourceArn"),
                "SourceAccount": p.get("SourceAccount"),
            }
        )
    )
    return Out(statement)


@applies("AWS::Lambda::EventInvokeConfig")
def lambda_event_invoke_config(d: Context, r: Pending) -> Out:
    lambdas = d.clients("lambda")
    p = r.props
    lambdas.put_function_event_invoke_config(
        **compact(
            {
                "FunctionName": p["FunctionName"],
                "Qualifier": p.get("Qualifier"),
                "MaximumRetryAttempts": p.get("MaximumRetryAttempts"),
                "MaximumEventAgeInSeconds": p.get("MaximumEventAgeInSeconds"),
                "DestinationConfig": p.get("DestinationConfig"),
            }
        )
    )
    return Out(f"{p['FunctionName']}:{p.get('Qualifier', '$LATEST')}")


@applies("AWS::Lambda::LayerVersion")
def lambda_layer(d: Context, r: Pending) -> Out:
    lambdas = d.clients("lambda")
    p = r.props
    content = _function_code(d, p["Content"])
    layer = lambdas.publish_layer_version(
        LayerName=p.get("LayerName") or generated_name(r),
        Content=content,
        **compact(
            {"Description": p.get("Description"), "CompatibleRuntimes": p.get("CompatibleRuntimes")}
        ),
    )
    return Out(layer["LayerVersionArn"])


def create_event_source_mapping(clients, props: dict) -> dict:
    """A deferred AWS::Lambda::EventSourceMapping made from its resolved properties."""
    lambdas = clients("lambda")
    existing = lambdas.list_event_source_mappings(FunctionName=props["FunctionName"])[
        "EventSourceMappings"
    ]
    for mapping in existing:
        if mapping.get("EventSourceArn") == props["EventSourceArn"]:
            return mapping
    return lambdas.create_event_source_mapping(
        **{k: v for k, v in props.items() if k not in ("Tags",)}
    )


# ----------------------------------------------------------------------------- logs, alarms


@applies("AWS::Logs::LogGroup")
def log_group(d: Context, r: Pending) -> Out:
    logs = d.clients("logs")
    p = r.props
    name = p.get("LogGroupName") or f"/{r.stack}/{r.logical_id}"
    found = logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
    if not any(g["logGroupName"] == name for g in found):
        logs.create_log_group(
            logGroupName=name,
            **compact({"kmsKeyId": p.get("KmsKeyId"), "tags": tag_map(p) or None}),
        )
    if p.get("RetentionInDays"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
    return Out(name, {"Arn": f"arn:aws:logs:{d.region}:{d.account}:log-group:{name}:*"})


@applies("AWS::Logs::LogStream")
def log_stream(d: Context, r: Pending) -> Out:
    logs = d.clients("logs")
    p = r.props
    name = p.get("LogStreamName") or r.logical_id
    try:
        logs.create_log_stream(logGroupName=p["LogGroupName"], logStreamName=name)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    return Out(name)


@applies("AWS::CloudWatch::Alarm")
def alarm(d: Context, r: Pending) -> Out:
    cloudwatch = d.clients("cloudwatch")
    p = dict(r.props)
    name = p.pop("AlarmName", None) or generated_name(r, 255)
    tags = tag_list(p)
    p.pop("Tags", None)
    cloudwatch.put_metric_alarm(AlarmName=name, **p, **({"Tags": tags} if tags else {}))
    return Out(name, {"Arn": f"arn:aws:cloudwatch:{d.region}:{d.account}:alarm:{name}"})


@applies("AWS::CloudWatch::Dashboard")
def dashboard(d: Context, r: Pending) -> Out:
    name = r.props.get("DashboardName") or generated_name(r, 255)
    d.clients("cloudwatch").put_dashboard(
        DashboardName=name, DashboardBody=_json(r.props["DashboardBody"])
    )
    return Out(name)


@applies("AWS::EC2::FlowLog")
def flow_log(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    p = r.props
    found = ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [p["ResourceId"]]}])[
        "FlowLogs"
    ]
    if found:
        return Out(found[0]["FlowLogId"])
    flow = ec2.create_flow_logs(
        **compact(
            {
                "ResourceIds": [p["ResourceId"]],
                "ResourceType": p["ResourceType"],
                "TrafficType": p.get("TrafficType", "ALL"),
                "LogDestinationType": p.get("LogDestinationType"),
                "LogGroupName": p.get("LogGroupName"),
                "LogDestination": p.get("LogDestination"),
                "DeliverLogsPermissionArn": p.get("DeliverLogsPermissionArn"),
            }
        )
    )
    return Out(flow["FlowLogIds"][0])


@applies("AWS::CloudTrail::Trail")
def trail(d: Context, r: Pending) -> Out:
    cloudtrail = d.clients("cloudtrail")
    p = r.props
    name = p.get("TrailName") or generated_name(r, 128)
    settings = compact(
        {
            "S3BucketName": p["S3BucketName"],
            "S3KeyPrefix": p.get("S3KeyPrefix"),
            "IncludeGlobalServiceEvents": p.get("IncludeGlobalServiceEvents"),
            "IsMultiRegionTrail": p.get("IsMultiRegionTrail"),
            "EnableLogFileValidation": p.get("EnableLogFileValidation"),
            "CloudWatchLogsLogGroupArn": p.get("CloudWatchLogsLogGroupArn"),
            "CloudWatchLogsRoleArn": p.get("CloudWatchLogsRoleArn"),
            "KmsKeyId": p.get("KMSKeyId"),
            "SnsTopicName": p.get("SnsTopicName"),
        }
    )
    try:
        arn = cloudtrail.get_trail(Name=name)["Trail"]["TrailARN"]
        cloudtrail.update_trail(Name=name, **settings)
    except cloudtrail.exceptions.TrailNotFoundException:
        arn = cloudtrail.create_trail(
            Name=name, **settings, **({"TagsList": tag_list(p)} if tag_list(p) else {})
        )["TrailARN"]
    if p.get("AdvancedEventSelectors"):
        cloudtrail.put_event_selectors(
            TrailName=name, AdvancedEventSelectors=p["AdvancedEventSelectors"]
        )
    elif p.get("EventSelectors"):
        cloudtrail.put_event_selectors(TrailName=name, EventSelectors=p["EventSelectors"])
    if p.get("IsLogging", True):
        cloudtrail.start_logging(Name=name)
    return Out(name, {"Arn": arn})


# ----------------------------------------------------------------------------- SQS, SNS, events

_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "SqsManagedSseEnabled",
)


@applies("AWS::SQS::Queue")
def sqs_queue(d: Context, r: Pending) -> Out:
    sqs = d.clients("sqs")
    p = r.props
    name = p.get("QueueName") or generated_name(r, 80)
    attributes = {
        k: str(p[k]).lower() if isinstance(p[k], bool) else str(p[k])
        for k in _QUEUE_ATTRIBUTES
        if k in p
    }
    for policy in ("RedrivePolicy", "RedriveAllowPolicy"):
        if policy in p:
            attributes[policy] = _json(p[policy])
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        if attributes:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    except sqs.exceptions.QueueDoesNotExist:
        url = sqs.create_queue(
            QueueName=name, Attributes=attributes, **({"tags": tag_map(p)} if tag_map(p) else {})
        )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return Out(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})


@applies("AWS::SQS::QueuePolicy")
def sqs_queue_policy(d: Context, r: Pending) -> Out:
    sqs = d.clients("sqs")
    for url in r.props["Queues"]:
        sqs.set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": _json(r.props["PolicyDocument"])}
        )
    return Out(f"{r.stack}-{r.logical_id}")


@applies("AWS::SNS::Topic")
def sns_topic(d: Context, r: Pending) -> Out:
    sns = d.clients("sns")
    p = r.props
    name = p.get("TopicName") or generated_name(r, 256)
    attributes = {
        k: str(p[k])
        for k in ("DisplayName", "KmsMasterKeyId", "FifoTopic", "ContentBasedDeduplication")
        if k in p
    }
    arn = sns.create_topic(
        Name=name, Attributes=attributes, **({"Tags": tag_list(p)} if tag_list(p) else {})
    )["TopicArn"]  # idempotent
    for key, value in attributes.items():
        sns.set_topic_attributes(TopicArn=arn, AttributeName=key, AttributeValue=value)
    for subscription in p.get("Subscription", []):
        sns.subscribe(
            TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"]
        )
    return Out(arn, {"TopicArn": arn, "TopicName": name})


@applies("AWS::SNS::TopicPolicy")
def sns_topic_policy(d: Context, r: Pending) -> Out:
    sns = d.clients("sns")
    for topic in r.props["Topics"]:
        sns.set_topic_attributes(
            TopicArn=topic, AttributeName="Policy", AttributeValue=_json(r.props["PolicyDocument"])
        )
    return Out(f"{r.stack}-{r.logical_id}")


@applies("AWS::SNS::Subscription")
def sns_subscription(d: Context, r: Pending) -> Out:
    p = r.props
    arn = d.clients("sns").subscribe(
        TopicArn=p["TopicArn"],
        Protocol=p["Protocol"],
        Endpoint=p["Endpoint"],
        ReturnSubscriptionArn=True,
        **(
            {"Attributes": {"RawMessageDelivery": str(p["RawMessageDelivery"]).lower()}}
            if "RawMessageDelivery" in p
            else {}
        ),
    )["SubscriptionArn"]
    return Out(arn)


@applies("AWS::Events::EventBus")
def event_bus(d: Context, r: Pending) -> Out:
    events = d.clients("events")
    p = r.props
    name = p["Name"]
    try:
        arn = events.describe_event_bus(Name=name)["Arn"]
    except events.exceptions.ResourceNotFoundException:
        arn = events.create_event_bus(
            Name=name, **compact({"Description": p.get("Description"), "Tags": tag_list(p) or None})
        )["EventBusArn"]
    return Out(name, {"Arn": arn, "Name": name})


@applies("AWS::Scheduler::Schedule")
def scheduler_schedule(d: Context, r: Pending) -> Out:
    """A schedule, kept by moto and fired by the local endpoint's Scheduler
    (services/scheduler.py)."""
    scheduler = d.clients("scheduler")
    p = r.props
    name = p.get("Name") or generated_name(r, 64)
    group = p.get("GroupName", "default")
    settings = compact(
        {
            "Name": name,
            "GroupName": group,
            "ScheduleExpression": p["ScheduleExpression"],
            "ScheduleExpressionTimezone": p.get("ScheduleExpressionTimezone"),
            "FlexibleTimeWindow": p["FlexibleTimeWindow"],
            "Target": p["Target"],
            "State": p.get("State", "ENABLED"),
            "Description": p.get("Description"),
            "KmsKeyArn": p.get("KmsKeyArn"),
            "StartDate": p.get("StartDate"),
            "EndDate": p.get("EndDate"),
        }
    )
    try:
        scheduler.get_schedule(Name=name, GroupName=group)
        arn = scheduler.update_schedule(**settings)["ScheduleArn"]
    except scheduler.exceptions.ResourceNotFoundException:
        arn = scheduler.create_schedule(**settings)["ScheduleArn"]
    return Out(name, {"Arn": arn})


@applies("AWS::Events::Rule")
def event_rule(d: Context, r: Pending) -> Out:
    events = d.clients("events")
    p = r.props
    name = p.get("Name") or generated_name(r)
    bus = p.get("EventBusName", "default")
    if isinstance(bus, str) and bus.startswith("arn:"):
        bus = bus.rsplit("/", 1)[-1]
    arn = events.put_rule(
        **compact(
            {
                "Name": name,
                "EventBusName": bus,
                "EventPattern": _json(p["EventPattern"]) if "EventPattern" in p else None,
                "ScheduleExpression": p.get("ScheduleExpression"),
                "State": p.get("State", "ENABLED"),
                "Description": p.get("Description"),
                "RoleArn": p.get("RoleArn"),
                "Tags": tag_list(p) or None,
            }
        )
    )["RuleArn"]
    targets = list(p.get("Targets", []))
    current = [
        t["Id"] for t in events.list_targets_by_rule(Rule=name, EventBusName=bus).get("Targets", [])
    ]
    stale = [i for i in current if i not in {t["Id"] for t in targets}]
    if stale:
        events.remove_targets(Rule=name, EventBusName=bus, Ids=stale)
    if targets:
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    ref = name if bus == "default" else f"{bus}|{name}"
    return Out(ref, {"Arn": arn})


# ----------------------------------------------------------------------------- DynamoDB


@applies("AWS::DynamoDB::Table")
def dynamodb_table(d: Context, r: Pending) -> Out:
    dynamodb = d.clients("dynamodb")
    p = r.props
    name = p.get("TableName") or generated_name(r, 255)
    sse = p.get("SSESpecification")
    try:
        table = dynamodb.describe_table(TableName=name)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        table = dynamodb.create_table(
            **compact(
                {
                    "TableName": name,
                    "KeySchema": p["KeySchema"],
                    "AttributeDefinitions": p["AttributeDefinitions"],
                    "BillingMode": p.get("BillingMode"),
                    "ProvisionedThroughput": p.get("ProvisionedThroughput"),
                    "GlobalSecondaryIndexes": p.get("GlobalSecondaryIndexes"),
                    "LocalSecondaryIndexes": p.get("LocalSecondaryIndexes"),
                    "StreamSpecification": p.get("StreamSpecification"),
                    "SSESpecification": compact(
                        {
                            "Enabled": sse.get("SSEEnabled"),
                            "SSEType": sse.get("SSEType"),
                            "KMSMasterKeyId": sse.get("KMSMasterKeyId"),
                        }
                    )
                    if sse
                    else None,
                    "DeletionProtectionEnabled": p.get("DeletionProtectionEnabled"),
                    "Tags": tag_list(p) or None,
                }
            )
        )["TableDescription"]
    ttl = p.get("TimeToLiveSpecification")
    if ttl:
        current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    recovery = p.get("PointInTimeRecoverySpecification")
    if recovery:
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification=recovery
        )
    return Out(name, {"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn", "")})


# ----------------------------------------------------------------------------- Glue


@applies("AWS::Glue::Database")
def glue_database(d: Context, r: Pending) -> Out:
    glue = d.clients("glue")
    database = r.props["DatabaseInput"]
    try:
        glue.get_database(Name=database["Name"])
        glue.update_database(Name=database["Name"], DatabaseInput=database)
    except glue.exceptions.EntityNotFoundException:
        glue.create_database(DatabaseInput=database)
    return Out(database["Name"])


@applies("AWS::Glue::Table")
def glue_table(d: Context, r: Pending) -> Out:
    """Made with the template's OpenTableFormatInput when it has one (an Iceberg table: Glue
    writes its first metadata). An existing Iceberg table is left as it is, and said so:
    the template's TableInput would replace its metadata_location (the Iceberg metadata is
    the table's truth, and the curate job evolves its schema). Other tables are updated to
    the template."""
    glue = d.clients("glue")
    database, table = r.props["DatabaseName"], r.props["TableInput"]
    try:
        current = glue.get_table(DatabaseName=database, Name=table["Name"])["Table"]
    except glue.exceptions.EntityNotFoundException:
        open_format = _open_table_format_input(r.props.get("OpenTableFormatInput"))
        glue.create_table(
            DatabaseName=database,
            TableInput=table,
            **({"OpenTableFormatInput": open_format} if open_format else {}),
        )
        return Out(table["Name"])
    if is_iceberg_table(current.get("Parameters") or {}):
        d.report.notes.append(
            f"{r.stack}/{r.logical_id} (AWS::Glue::Table {database}.{table['Name']}): "
            f"Iceberg table {database}.{table['Name']} exists; its schema is evolved by the "
            "curate job, not replaced by the template (the template's TableInput is not "
            "applied: it would drop the table's metadata_location)"
        )
    else:
        glue.update_table(DatabaseName=database, TableInput=table)
    return Out(table["Name"])


def _open_table_format_input(template: dict | None) -> dict | None:
    """The template's OpenTableFormatInput in the API's names: CloudFormation's
    IcebergInput.IcebergTableInput is CreateTable's IcebergInput.CreateIcebergTableInput
    (the structures within are named alike)."""
    if not template:
        return None
    translated = json.loads(json.dumps(template))
    iceberg = translated.get("IcebergInput")
    if iceberg is not None:
        iceberg.setdefault("MetadataOperation", "CREATE")  # its only value; the API's required
        if "IcebergTableInput" in iceberg:
            iceberg["CreateIcebergTableInput"] = iceberg.pop("IcebergTableInput")
    return translated


@applies("AWS::Glue::SecurityConfiguration")
def glue_security_configuration(d: Context, r: Pending) -> Out:
    glue = d.clients("glue")
    name = r.props["Name"]
    configuration = dict(r.props["EncryptionConfiguration"])
    if "S3Encryptions" in configuration:  # the template's plural is the API's S3Encryption
        configuration["S3Encryption"] = configuration.pop("S3Encryptions")
    try:
        glue.get_security_configuration(Name=name)
    except glue.exceptions.EntityNotFoundException:
        glue.create_security_configuration(Name=name, EncryptionConfiguration=configuration)
    return Out(name)


@applies("AWS::Glue::DataCatalogEncryptionSettings")
def glue_catalog_encryption(d: Context, r: Pending) -> Out:
    settings = json.loads(json.dumps(r.props["DataCatalogEncryptionSettings"]))
    password = settings.get("ConnectionPasswordEncryption", {})
    if "KmsKeyId" in password:  # the template's KmsKeyId is the API's AwsKmsKeyId
        password["AwsKmsKeyId"] = password.pop("KmsKeyId")
    d.clients("glue").put_data_catalog_encryption_settings(
        CatalogId=r.props.get("CatalogId", d.account), DataCatalogEncryptionSettings=settings
    )
    return Out(r.props.get("CatalogId", d.account))


@applies("AWS::Glue::Crawler")
def glue_crawler(d: Context, r: Pending) -> Out:
    glue = d.clients("glue")
    p = r.props
    name = p.get("Name") or generated_name(r, 255)
    settings = compact(
        {
            "Role": p["Role"],
            "DatabaseName": p.get("DatabaseName"),
            "Description": p.get("Description"),
            "Targets": p["Targets"],
            "Schedule": (p.get("Schedule") or {}).get("ScheduleExpression"),
            "Classifiers": p.get("Classifiers"),
            "TablePrefix": p.get("TablePrefix"),
            "SchemaChangePolicy": p.get("SchemaChangePolicy"),
            "RecrawlPolicy": p.get("RecrawlPolicy"),
            "Configuration": p.get("Configuration"),
            "CrawlerSecurityConfiguration": p.get("CrawlerSecurityConfiguration"),
        }
    )
    try:
        glue.get_crawler(Name=name)
        glue.update_crawler(Name=name, **settings)
    except glue.exceptions.EntityNotFoundException:
        tags = p.get("Tags") if isinstance(p.get("Tags"), dict) else tag_map(p)
        glue.create_crawler(Name=name, **settings, **({"Tags": tags} if tags else {}))
    return Out(name)


@applies("AWS::Glue::Job")
def glue_job(d: Context, r: Pending) -> Out:
    glue = d.clients("glue")
    p = r.props
    name = p.get("Name") or generated_name(r, 255)
    settings = compact(
        {
            "Role": p["Role"],
            "Command": p["Command"],
            "DefaultArguments": p.get("DefaultArguments"),
            "NonOverridableArguments": p.get("NonOverridableArguments"),
            "Description": p.get("Description"),
            "GlueVersion": p.get("GlueVersion"),
            "WorkerType": p.get("WorkerType"),
            "NumberOfWorkers": p.get("NumberOfWorkers"),
            "MaxCapacity": p.get("MaxCapacity"),
            "Timeout": p.get("Timeout"),
            "MaxRetries": p.get("MaxRetries"),
            "ExecutionProperty": p.get("ExecutionProperty"),
            "SecurityConfiguration": p.get("SecurityConfiguration"),
            "ExecutionClass": p.get("ExecutionClass"),
            "Connections": p.get("Connections"),
            "NotificationProperty": p.get("NotificationProperty"),
        }
    )
    try:
        glue.get_job(JobName=name)
        glue.update_job(JobName=name, JobUpdate=settings)
    except glue.exceptions.EntityNotFoundException:
        tags = p.get("Tags") if isinstance(p.get("Tags"), dict) else tag_map(p)
        glue.create_job(Name=name, **settings, **({"Tags": tags} if tags else {}))
    return Out(name)


# ----------------------------------------------------------------------------- Athena


@applies("AWS::Athena::WorkGroup")
def athena_workgroup(d: Context, r: Pending) -> Out:
    athena = d.clients("athena")
    p = r.props
    name = p["Name"]
    configuration = dict(p.get("WorkGroupConfiguration", {}))
    existing = {w["Name"] for w in athena.list_work_groups()["WorkGroups"]}
    if name not in existing:
        athena.create_work_group(
            Name=name,
            Configuration=configuration,
            **compact({"Description": p.get("Description"), "Tags": tag_list(p) or None}),
        )
    else:
        update = {
            "ResultConfigurationUpdates": configuration.get("ResultConfiguration", {}),
            **{
                k: v
                for k, v in configuration.items()
                if k
                in (
                    "EnforceWorkGroupConfiguration",
                    "PublishCloudWatchMetricsEnabled",
                    "BytesScannedCutoffPerQuery",
                    "RequesterPaysEnabled",
                    "EngineVersion",
                )
            },
        }
        athena.update_work_group(WorkGroup=name, ConfigurationUpdates=update)
    return Out(name)


@applies("AWS::Athena::NamedQuery")
def athena_named_query(d: Context, r: Pending) -> Out:
    athena = d.clients("athena")
    p = r.props
    workgroup = p.get("WorkGroup", "primary")
    if r.previous is not None:
        try:  # made again from the changed template (named queries are not updated)
            athena.delete_named_query(NamedQueryId=r.previous.physical_id)
        except athena.exceptions.ClientError:
            pass
    query_id = athena.create_named_query(
        **compact(
            {
                "Name": p["Name"],
                "Database": p["Database"],
                "QueryString": p["QueryString"],
                "Description": p.get("Description"),
                "WorkGroup": workgroup,
            }
        )
    )["NamedQueryId"]
    return Out(query_id, {"NamedQueryId": query_id})


# ----------------------------------------------------------------------------- SageMaker, Step Functions


@applies("AWS::SageMaker::ModelPackageGroup")
def model_package_group(d: Context, r: Pending) -> Out:
    sagemaker = d.clients("sagemaker")
    p = r.props
    name = p["ModelPackageGroupName"]
    try:
        arn = sagemaker.describe_model_package_group(ModelPackageGroupName=name)[
            "ModelPackageGroupArn"
        ]
    except sagemaker.exceptions.ClientError:
        arn = sagemaker.create_model_package_group(
            **compact(
                {
                    "ModelPackageGroupName": name,
                    "ModelPackageGroupDescription": p.get("ModelPackageGroupDescription"),
                    "Tags": tag_list(p) or None,
                }
            )
        )["ModelPackageGroupArn"]
    return Out(arn, {"ModelPackageGroupArn": arn})


@applies("AWS::StepFunctions::StateMachine")
def state_machine(d: Context, r: Pending) -> Out:
    sfn = d.clients("stepfunctions")
    p = r.props
    name = p.get("StateMachineName") or generated_name(r, 80)
    definition = p.get("DefinitionString") or json.dumps(p.get("Definition"))
    for key, value in (p.get("DefinitionSubstitutions") or {}).items():
        definition = definition.replace("${" + key + "}", str(value))
    arn = f"arn:aws:states:{d.region}:{d.account}:stateMachine:{name}"
    settings = compact(
        {
            "roleArn": p["RoleArn"],
            "loggingConfiguration": _lower_keys(p["LoggingConfiguration"])
            if "LoggingConfiguration" in p
            else None,
            "tracingConfiguration": _lower_keys(p["TracingConfiguration"])
            if "TracingConfiguration" in p
            else None,
        }
    )
    try:
        sfn.describe_state_machine(stateMachineArn=arn)
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, **settings)
    except sfn.exceptions.StateMachineDoesNotExist:
        sfn.create_state_machine(
            name=name,
            definition=definition,
            type=p.get("StateMachineType", "STANDARD"),
            **settings,
            **(
                {"tags": [{"key": t["Key"], "value": t["Value"]} for t in tag_list(p)]}
                if tag_list(p)
                else {}
            ),
        )
    return Out(arn, {"Arn": arn, "Name": name})


def _lower_keys(value: Any) -> Any:
    """CloudFormation's PascalCase as the Step Functions API's camelCase."""
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------- EMR


def _emr_configurations(configurations: list[dict] | None) -> list[dict] | None:
    """The template's ConfigurationProperties are the API's Properties."""
    if configurations is None:
        return None
    return [
        compact(
            {
                "Classification": c.get("Classification"),
                "Properties": c.get("ConfigurationProperties"),
                "Configurations": _emr_configurations(c.get("Configurations")),
            }
        )
        for c in configurations
    ]


def _instance_group(group: dict, role: str) -> dict:
    return compact(
        {
            "Name": group.get("Name", role.title()),
            "InstanceRole": role,
            "Market": group.get("Market", "ON_DEMAND"),
            "InstanceType": group["InstanceType"],
            "InstanceCount": group["InstanceCount"],
            "BidPrice": group.get("BidPrice"),
            "EbsConfiguration": group.get("EbsConfiguration"),
            "Configurations": _emr_configurations(group.get("Configurations")),
        }
    )


def emr_cluster_request(props: dict) -> dict:
    """AWS::EMR::Cluster's properties as RunJobFlow's request."""
    instances = props["Instances"]
    groups = [_instance_group(instances["MasterInstanceGroup"], "MASTER")]
    if "CoreInstanceGroup" in instances:
        groups.append(_instance_group(instances["CoreInstanceGroup"], "CORE"))
    for task in instances.get("TaskInstanceGroups", []):
        groups.append(_instance_group(task, "TASK"))
    return compact(
        {
            "Name": props["Name"],
            "ReleaseLabel": props.get("ReleaseLabel"),
            "LogUri": props.get("LogUri"),
            "Applications": props.get("Applications"),
            "Configurations": _emr_configurations(props.get("Configurations")),
            "Instances": compact(
                {
                    "InstanceGroups": groups,
                    "KeepJobFlowAliveWhenNoSteps": instances.get(
                        "KeepJobFlowAliveWhenNoSteps", True
                    ),
                    "TerminationProtected": instances.get("TerminationProtected"),
                    "Ec2SubnetId": instances.get("Ec2SubnetId"),
                    "Ec2SubnetIds": instances.get("Ec2SubnetIds"),
                    "EmrManagedMasterSecurityGroup": instances.get("EmrManagedMasterSecurityGroup"),
                    "EmrManagedSlaveSecurityGroup": instances.get("EmrManagedSlaveSecurityGroup"),
                    "ServiceAccessSecurityGroup": instances.get("ServiceAccessSecurityGroup"),
                }
            ),
            "JobFlowRole": props.get("JobFlowRole"),
            "ServiceRole": props.get("ServiceRole"),
            "SecurityConfiguration": props.get("SecurityConfiguration"),
            "VisibleToAllUsers": props.get("VisibleToAllUsers", True),
            "AutoTerminationPolicy": props.get("AutoTerminationPolicy"),
            "StepConcurrencyLevel": props.get("StepConcurrencyLevel"),
            "EbsRootVolumeSize": props.get("EbsRootVolumeSize"),
            "Tags": tag_list(props) or None,
        }
    )


@applies("AWS::EMR::Cluster")
def emr_cluster(d: Context, r: Pending) -> Out:
    emr = d.clients("emr")
    active = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
    if r.previous is not None:
        try:
            state = emr.describe_cluster(ClusterId=r.previous.physical_id)["Cluster"]["Status"][
                "State"
            ]
            if state in active:
                return Out(r.previous.physical_id, r.previous.attributes)
        except emr.exceptions.ClientError:
            pass
    for page in emr.get_paginator("list_clusters").paginate(ClusterStates=list(active)):
        for cluster in page.get("Clusters", []):
            if cluster.get("Name") == r.props["Name"]:
                return Out(cluster["Id"], _cluster_attributes(emr, cluster["Id"]))
    cluster_id = emr.run_job_flow(**emr_cluster_request(r.props))["JobFlowId"]
    return Out(cluster_id, _cluster_attributes(emr, cluster_id))


def _cluster_attributes(emr, cluster_id: str) -> dict:
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    return {
        "MasterPublicDNS": cluster.get("MasterPublicDnsName", ""),
        "Arn": cluster.get("ClusterArn", ""),
        "Id": cluster_id,
    }


@applies("AWS::EMR::SecurityConfiguration")
def emr_security_configuration(d: Context, r: Pending) -> Out:
    emr = d.clients("emr")
    name = r.props.get("Name") or generated_name(r, 10280)
    try:
        emr.describe_security_configuration(Name=name)
    except emr.exceptions.ClientError:
        emr.create_security_configuration(
            Name=name, SecurityConfiguration=_json(r.props["SecurityConfiguration"])
        )
    return Out(name)


# ----------------------------------------------------------------------------- Lake Formation


@applies("AWS::LakeFormation::Resource")
def lf_resource(d: Context, r: Pending) -> Out:
    lf = d.clients("lakeformation")
    p = r.props
    try:
        lf.register_resource(
            **compact(
                {
                    "ResourceArn": p["ResourceArn"],
                    "UseServiceLinkedRole": p.get("UseServiceLinkedRole", False),
                    "RoleArn": p.get("RoleArn"),
                    "HybridAccessEnabled": p.get("HybridAccessEnabled"),
                }
            )
        )
    except lf.exceptions.AlreadyExistsException:
        pass
    return Out(p["ResourceArn"])


@applies("AWS::LakeFormation::Tag")
def lf_tag(d: Context, r: Pending) -> Out:
    lf = d.clients("lakeformation")
    key, values = r.props["TagKey"], list(r.props["TagValues"])
    existing = {t["TagKey"]: t["TagValues"] for t in lf.list_lf_tags().get("LFTags", [])}
    if key not in existing:
        lf.create_lf_tag(TagKey=key, TagValues=values)
    else:
        added = [v for v in values if v not in existing[key]]
        removed = [v for v in existing[key] if v not in values]
        if added or removed:
            lf.update_lf_tag(
                TagKey=key,
                **compact({"TagValuesToAdd": added or None, "TagValuesToDelete": removed or None}),
            )
    return Out(key)


def _lf_resource(resource: dict) -> dict:
    """CloudFormation's Lake Formation resource as the API's (TableWildcard is {} there)."""
    resource = json.loads(json.dumps(resource))
    table = resource.get("Table")
    if table is not None and "TableWildcard" in table:
        table["TableWildcard"] = {}
    return resource


@applies("AWS::LakeFormation::TagAssociation")
def lf_tag_association(d: Context, r: Pending) -> Out:
    lf = d.clients("lakeformation")
    tags = [{"TagKey": t["TagKey"], "TagValues": t["TagValues"]} for t in r.props["LFTags"]]
    failures = lf.add_lf_tags_to_resource(
        Resource=_lf_resource(r.props["Resource"]), LFTags=tags
    ).get("Failures")
    if failures:
        raise RuntimeError(f"Lake Formation refused the tags: {failures}")
    return Out(json.dumps(r.props["Resource"], sort_keys=True))


@applies("AWS::LakeFormation::PrincipalPermissions")
def lf_principal_permissions(d: Context, r: Pending) -> Out:
    lf = d.clients("lakeformation")
    p = r.props
    resource = _lf_resource(p["Resource"])
    lf.grant_permissions(
        **compact(
            {
                "Principal": p["Principal"],
                "Resource": resource,
                "Permissions": p["Permissions"],
                "PermissionsWithGrantOption": p.get("PermissionsWithGrantOption") or None,
            }
        )
    )
    identifier = p["Principal"]["DataLakePrincipalIdentifier"]
    return Out(f"{identifier}|{json.dumps(resource, sort_keys=True)}")


# ----------------------------------------------------------------------------- EC2


def _ec2_tags(ec2, resource_id: str, props: dict) -> None:
    if tag_list(props):
        ec2.create_tags(Resources=[resource_id], Tags=tag_list(props))


@applies("AWS::EC2::VPC")
def vpc(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    p = r.props
    vpc_id = _recorded(r, lambda i: ec2.describe_vpcs(VpcIds=[i]))
    if vpc_id is None:
        vpc_id = ec2.create_vpc(
            CidrBlock=p["CidrBlock"], InstanceTenancy=p.get("InstanceTenancy", "default")
        )["Vpc"]["VpcId"]
    for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
        if attribute in p:
            ec2.modify_vpc_attribute(VpcId=vpc_id, **{attribute: {"Value": bool(p[attribute])}})
    _ec2_tags(ec2, vpc_id, p)
    groups = ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "group-name", "Values": ["default"]},
        ]
    )["SecurityGroups"]
    acls = ec2.describe_network_acls(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "default", "Values": ["true"]}]
    )["NetworkAcls"]
    return Out(
        vpc_id,
        {
            "VpcId": vpc_id,
            "CidrBlock": p["CidrBlock"],
            "DefaultSecurityGroup": groups[0]["GroupId"] if groups else "",
            "DefaultNetworkAcl": acls[0]["NetworkAclId"] if acls else "",
        },
    )


@applies("AWS::EC2::Subnet")
def subnet(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    p = r.props
    subnet_id = _recorded(r, lambda i: ec2.describe_subnets(SubnetIds=[i]))
    zone = d.zone(p.get("AvailabilityZone", "dummy1a"))
    if subnet_id is None:
        found = ec2.describe_subnets(
            Filters=[
                {"Name": "vpc-id", "Values": [p["VpcId"]]},
                {"Name": "cidr-block", "Values": [p["CidrBlock"]]},
            ]
        )["Subnets"]
        subnet_id = (
            found[0]["SubnetId"]
            if found
            else ec2.create_subnet(
                VpcId=p["VpcId"], CidrBlock=p["CidrBlock"], AvailabilityZone=zone
            )["Subnet"]["SubnetId"]
        )
    _ec2_tags(ec2, subnet_id, p)
    return Out(
        subnet_id,
        {
            "SubnetId": subnet_id,
            "AvailabilityZone": zone,
            "VpcId": p["VpcId"],
            "CidrBlock": p["CidrBlock"],
        },
    )


@applies("AWS::EC2::SecurityGroup")
def security_group(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    p = r.props
    name = p.get("GroupName") or generated_name(r, 255)
    found = ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [p["VpcId"]]},
            {"Name": "group-name", "Values": [name]},
        ]
    )["SecurityGroups"]
    group_id = (
        found[0]["GroupId"]
        if found
        else ec2.create_security_group(
            GroupName=name, Description=p.get("GroupDescription", name), VpcId=p["VpcId"]
        )["GroupId"]
    )
    if not found:
        egress = p.get("SecurityGroupEgress")
        if egress is not None:  # CloudFormation replaces the allow-all default with these
            ec2.revoke_security_group_egress(
                GroupId=group_id,
                IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
            )
            _authorize(ec2.authorize_security_group_egress, group_id, egress)
        _authorize(
            ec2.authorize_security_group_ingress, group_id, p.get("SecurityGroupIngress", [])
        )
    _ec2_tags(ec2, group_id, p)
    return Out(group_id, {"GroupId": group_id, "VpcId": p["VpcId"]})


def _authorize(call, group_id: str, rules: list[dict]) -> None:
    permissions = []
    for rule in rules:
        permission: dict[str, Any] = {"IpProtocol": str(rule.get("IpProtocol", "-1"))}
        for key in ("FromPort", "ToPort"):
            if key in rule:
                permission[key] = int(rule[key])
        if "CidrIp" in rule:
            permission["IpRanges"] = [
                compact({"CidrIp": rule["CidrIp"], "Description": rule.get("Description")})
            ]
        if "DestinationSecurityGroupId" in rule or "SourceSecurityGroupId" in rule:
            permission["UserIdGroupPairs"] = [
                {"GroupId": rule.get("DestinationSecurityGroupId") or rule["SourceSecurityGroupId"]}
            ]
        if "DestinationPrefixListId" in rule:
            permission["PrefixListIds"] = [{"PrefixListId": rule["DestinationPrefixListId"]}]
        permissions.append(permission)
    if permissions:
        call(GroupId=group_id, IpPermissions=permissions)


@applies("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")
def security_group_rule(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    p = dict(r.props)
    group = p.pop("GroupId")
    call = (
        ec2.authorize_security_group_ingress
        if r.type.endswith("Ingress")
        else ec2.authorize_security_group_egress
    )
    try:
        _authorize(call, group, [p])
    except ec2.exceptions.ClientError as exc:
        if code(exc) != "InvalidPermission.Duplicate":
            raise
    return Out(f"{group}-{r.logical_id}")


@applies("AWS::EC2::InternetGateway")
def internet_gateway(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    gateway = _recorded(r, lambda i: ec2.describe_internet_gateways(InternetGatewayIds=[i]))
    if gateway is None:
        gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    _ec2_tags(ec2, gateway, r.props)
    return Out(gateway, {"InternetGatewayId": gateway})


@applies("AWS::EC2::VPCGatewayAttachment")
def gateway_attachment(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    gateway, vpc_id = r.props.get("InternetGatewayId"), r.props["VpcId"]
    attached = ec2.describe_internet_gateways(InternetGatewayIds=[gateway])["InternetGateways"][0]
    if not any(a["VpcId"] == vpc_id for a in attached.get("Attachments", [])):
        ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc_id)
    return Out(f"{gateway}|{vpc_id}")


@applies("AWS::EC2::EIP")
def elastic_ip(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    allocation = _recorded(r, lambda i: ec2.describe_addresses(AllocationIds=[i]), "AllocationId")
    if allocation is None:
        allocation = ec2.allocate_address(Domain=r.props.get("Domain", "vpc"))["AllocationId"]
    address = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"][0]
    _ec2_tags(ec2, allocation, r.props)
    return Out(address["PublicIp"], {"AllocationId": allocation, "PublicIp": address["PublicIp"]})


@applies("AWS::EC2::NatGateway")
def nat_gateway(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    gateway = _recorded(r, lambda i: ec2.describe_nat_gateways(NatGatewayIds=[i]))
    if gateway is None:
        gateway = ec2.create_nat_gateway(
            SubnetId=r.props["SubnetId"], AllocationId=r.props["AllocationId"]
        )["NatGateway"]["NatGatewayId"]
    _ec2_tags(ec2, gateway, r.props)
    return Out(gateway)


@applies("AWS::EC2::RouteTable")
def route_table(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    table = _recorded(r, lambda i: ec2.describe_route_tables(RouteTableIds=[i]))
    if table is None:
        table = ec2.create_route_table(VpcId=r.props["VpcId"])["RouteTable"]["RouteTableId"]
    _ec2_tags(ec2, table, r.props)
    return Out(table, {"RouteTableId": table})


@applies("AWS::EC2::Route")
def route(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    p = r.props
    target = compact(
        {
            "GatewayId": p.get("GatewayId"),
            "NatGatewayId": p.get("NatGatewayId"),
            "VpcEndpointId": p.get("VpcEndpointId"),
            "TransitGatewayId": p.get("TransitGatewayId"),
        }
    )
    try:
        ec2.create_route(
            RouteTableId=p["RouteTableId"], DestinationCidrBlock=p["DestinationCidrBlock"], **target
        )
    except ec2.exceptions.ClientError as exc:
        if code(exc) != "RouteAlreadyExists":
            raise
        ec2.replace_route(
            RouteTableId=p["RouteTableId"], DestinationCidrBlock=p["DestinationCidrBlock"], **target
        )
    return Out(f"{p['RouteTableId']}|{p['DestinationCidrBlock']}")


@applies("AWS::EC2::SubnetRouteTableAssociation")
def route_table_association(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    table, subnet_id = r.props["RouteTableId"], r.props["SubnetId"]
    current = ec2.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]
    for association in current.get("Associations", []):
        if association.get("SubnetId") == subnet_id:
            return Out(association["RouteTableAssociationId"])
    return Out(ec2.associate_route_table(RouteTableId=table, SubnetId=subnet_id)["AssociationId"])


@applies("AWS::EC2::VPCEndpoint")
def vpc_endpoint(d: Context, r: Pending) -> Out:
    ec2 = d.clients("ec2")
    p = r.props
    endpoint = _recorded(r, lambda i: ec2.describe_vpc_endpoints(VpcEndpointIds=[i]))
    if endpoint is None:
        endpoint = ec2.create_vpc_endpoint(
            **compact(
                {
                    "VpcId": p["VpcId"],
                    "ServiceName": p["ServiceName"],
                    "VpcEndpointType": p.get("VpcEndpointType", "Gateway"),
                    "RouteTableIds": p.get("RouteTableIds"),
                    "SubnetIds": p.get("SubnetIds"),
                    "SecurityGroupIds": p.get("SecurityGroupIds"),
                    "PrivateDnsEnabled": p.get("PrivateDnsEnabled"),
                    "PolicyDocument": _json(p["PolicyDocument"]) if "PolicyDocument" in p else None,
                }
            )
        )["VpcEndpoint"]["VpcEndpointId"]
    return Out(endpoint, {"Id": endpoint})


# ----------------------------------------------------------------------------- custom resources


@applies("Custom::VpcRestrictDefaultSG")
def restrict_default_security_group(d: Context, r: Pending) -> Out:
    """What CDK's provider does: the VPC's default security group loses its rules."""
    ec2 = d.clients("ec2")
    group_id = r.props["DefaultSecurityGroupId"]
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    if group.get("IpPermissions"):
        ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=group["IpPermissions"])
    if group.get("IpPermissionsEgress"):
        ec2.revoke_security_group_egress(
            GroupId=group_id, IpPermissions=group["IpPermissionsEgress"]
        )
    return Out(group_id)


@applies("Custom::CDKBucketDeployment")
def bucket_deployment(d: Context, r: Pending) -> Out:
    """What CDK's BucketDeployment provider does: each source zip unpacked under the
    destination prefix (with the system metadata: SSE-KMS and its key), and with Prune
    what the sources no longer hold removed from that prefix."""
    s3 = d.clients("s3")
    p = r.props
    bucket, prefix = p["DestinationBucketName"], p.get("DestinationBucketKeyPrefix", "")
    metadata = p.get("SystemMetadata", {})
    extra = compact(
        {
            "ServerSideEncryption": metadata.get("sse"),
            "SSEKMSKeyId": metadata.get("sse-kms-key-id"),
            "ContentType": metadata.get("content-type"),
            "CacheControl": metadata.get("cache-control"),
        }
    )
    written: set[str] = set()
    for source_bucket, key in zip(p["SourceBucketNames"], p["SourceObjectKeys"], strict=True):
        d.publish(source_bucket, key)
        archive = s3.get_object(Bucket=source_bucket, Key=key)["Body"].read()
        with zipfile.ZipFile(io.BytesIO(archive)) as files:
            for info in files.infolist():
                if info.is_dir():
                    continue
                target = prefix + info.filename
                s3.put_object(Bucket=bucket, Key=target, Body=files.read(info), **extra)
                written.add(target)
    if p.get("Prune", True):
        stale = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            stale += [o["Key"] for o in page.get("Contents", []) if o["Key"] not in written]
        for start in range(0, len(stale), 1000):
            s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[start : start + 1000]]}
            )
    return Out(
        f"aws.cdk.s3deployment.{r.logical_id}", {"DestinationBucketArn": f"arn:aws:s3:::{bucket}"}
    )
