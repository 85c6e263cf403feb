"""The audit trail's layout and its named queries (stacks/audit.py deploys them).

The queries are generated from the spec: which datasets declare `pii:` columns, where the
lake keeps them (dataplatform.layout) and the buckets' names (dataplatform.naming). Pure
functions of their arguments, Trino SQL for Athena engine v3, over the `cloudtrail` table
of the audit database (CloudTrail's log format, partition projection on region and day).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dataplatform import layout
from dataplatform.naming import Names
from dataplatform.spec import Dataset

# The lake's buckets whose objects the trail records (S3 data events): those that hold
# data. athena-results holds copies of query results (PII columns a query selected
# included). Not recorded: artifacts (job code and run reports, written by CloudFormation
# and the jobs) and access-logs (recording the log deliveries would log the logging).
AUDITED_ZONES = ("raw", "curated", "features", "models", "athena-results")

TABLE = "cloudtrail"
# Where CloudTrail delivers (no key prefix): AWSLogs/<account>/CloudTrail/<region>/<yyyy/MM/dd>/
TIMESTAMP_FORMAT = "yyyy/MM/dd"
# The first day the table projects; any date before the first deployment is harmless.
PROJECTION_START = "2025/01/01"
# A multi-region trail records global services (IAM, STS, CloudFront...) in us-east-1: the
# table projects that region too, or "who changed IAM" would find nothing.
GLOBAL_SERVICE_REGION = "us-east-1"

# The columns of a CloudTrail event, as in AWS's "Creating the table for CloudTrail logs in
# Athena using partition projection" (Hive types; the SerDe maps the JSON fields by name).
CLOUDTRAIL_COLUMNS = (
    ("eventversion", "string"),
    (
        "useridentity",
        "struct<type:string,principalid:string,arn:string,accountid:string,"
        "invokedby:string,accesskeyid:string,username:string,"
        "onbehalfof:struct<userid:string,identitystorearn:string>,"
        "sessioncontext:struct<attributes:struct<mfaauthenticated:string,creationdate:string>,"
        "sessionissuer:struct<type:string,principalid:string,arn:string,accountid:string,"
        "username:string>,ec2roledelivery:string,"
        "webidfederationdata:struct<federatedprovider:string,attributes:map<string,string>>>>",
    ),
    ("eventtime", "string"),
    ("eventsource", "string"),
    ("eventname", "string"),
    ("awsregion", "string"),
    ("sourceipaddress", "string"),
    ("useragent", "string"),
    ("errorcode", "string"),
    ("errormessage", "string"),
    ("requestparameters", "string"),
    ("responseelements", "string"),
    ("additionaleventdata", "string"),
    ("requestid", "string"),
    ("eventid", "string"),
    ("readonly", "string"),
    ("resources", "array<struct<arn:string,accountid:string,type:string>>"),
    ("eventtype", "string"),
    ("apiversion", "string"),
    ("recipientaccountid", "string"),
    ("serviceeventdetails", "string"),
    ("sharedeventid", "string"),
    ("vpcendpointid", "string"),
    ("vpcendpointaccountid", "string"),
    ("eventcategory", "string"),
    (
        "addendum",
        "struct<reason:string,updatedfields:string,originalrequestid:string,"
        "originaleventid:string>",
    ),
    ("sessioncredentialfromconsole", "string"),
    ("edgedevicedetails", "string"),
    ("tlsdetails", "struct<tlsversion:string,ciphersuite:string,clientprovidedhostheader:string>"),
)

# S3 object writes and deletes (data events); CreateMultipartUpload/UploadPart are left out:
# CompleteMultipartUpload records the object's arrival once.
WRITE_EVENTS = (
    "PutObject",
    "CopyObject",
    "CompleteMultipartUpload",
    "DeleteObject",
    "DeleteObjects",
    "PutObjectTagging",
    "DeleteObjectTagging",
    "PutObjectRetention",
    "PutObjectLegalHold",
    "RestoreObject",
)
READ_EVENTS = ("GetObject",)
# KMS's cryptographic calls are management events too, but they change nothing.
KMS_CRYPTO_EVENTS = (
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateMac",
    "GenerateRandom",
    "ReEncrypt",
    "Sign",
    "Verify",
    "VerifyMac",
)
SETTINGS_SOURCES = ("iam.amazonaws.com", "kms.amazonaws.com", "lakeformation.amazonaws.com")


def trail_logs_prefix(account: str) -> str:
    """Where the trail's log files are, under the audit bucket (digests are beside, in
    CloudTrail-Digest/)."""
    return f"AWSLogs/{account}/CloudTrail/"


def projected_regions(region: str) -> tuple[str, ...]:
    return (region,) if region == GLOBAL_SERVICE_REGION else (region, GLOBAL_SERVICE_REGION)


@dataclass(frozen=True)
class PiiLocation:
    """A prefix of a lake bucket that holds a PII dataset's rows."""

    dataset: str
    zone: str
    bucket: str
    prefix: str


def pii_locations(datasets: Sequence[Dataset], names: Names) -> tuple[PiiLocation, ...]:
    """Every prefix of raw and curated holding rows of a dataset that declares `pii:`: the
    data itself, and the rows set aside with all their columns (raw's Firehose errors,
    curated's quarantine)."""
    found = []
    for ds in datasets:
        if not ds.pii:
            continue
        for zone, bucket, prefix in (
            ("raw", names.raw_bucket, layout.raw_prefix(ds.name)),
            ("raw", names.raw_bucket, layout.errors_prefix(ds.name)),
            ("curated", names.curated_bucket, layout.curated_prefix(ds.name)),
            ("curated", names.curated_bucket, layout.quarantine_prefix(ds.name)),
        ):
            found.append(PiiLocation(ds.name, zone, bucket, prefix))
    return tuple(found)


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _table(names: Names) -> str:
    return f'"{names.audit_database}"."{TABLE}"'


def _days(days: int, indent: str = "  ") -> str:
    """The partition filter (projected days are yyyy/MM/dd strings: they sort as dates)."""
    return (
        f"\"timestamp\" >= date_format(current_date - interval '{days}' day, '%Y/%m/%d')\n"
        f"{indent}AND from_iso8601_timestamp(eventtime) >= current_timestamp - interval '{days}' day"
    )


_OBJECT = (
    "SELECT *,\n"
    "    json_extract_scalar(requestparameters, '$.bucketName') AS bucket,\n"
    "    json_extract_scalar(requestparameters, '$.key') AS object_key\n"
)
_WHO = (
    "useridentity.arn AS principal,\n"
    "  useridentity.sessioncontext.sessionissuer.arn AS role,\n"
    "  sourceipaddress"
)


def pii_reads_sql(datasets: Sequence[Dataset], names: Names, days: int = 7) -> str:
    """Who read objects of PII datasets (raw and curated), per principal and dataset."""
    locations = pii_locations(datasets, names)
    if not locations:
        raise ValueError("no dataset declares pii: columns; there is nothing to audit")
    cases = "\n".join(
        f"      WHEN bucket = '{loc.bucket}' AND starts_with(object_key, '{loc.prefix}') "
        f"THEN '{loc.dataset}'"
        for loc in locations
    )
    buckets = sorted({loc.bucket for loc in locations})
    return (
        f"WITH objects AS (\n  {_OBJECT}  FROM {_table(names)}\n"
        f"  WHERE {_days(days, '    ')}\n"
        f"    AND eventsource = 's3.amazonaws.com'\n"
        f"    AND eventname IN ({_quoted(READ_EVENTS)})\n"
        f"    AND errorcode IS NULL\n"
        f"), pii_reads AS (\n"
        f"  SELECT *,\n    CASE\n{cases}\n    END AS dataset\n"
        f"  FROM objects\n  WHERE bucket IN ({_quoted(buckets)})\n)\n"
        f"SELECT dataset, bucket, {_WHO},\n"
        "  count(*) AS reads, min(eventtime) AS first_read, max(eventtime) AS last_read\n"
        "FROM pii_reads\nWHERE dataset IS NOT NULL\n"
        "GROUP BY 1, 2, 3, 4, 5\nORDER BY last_read DESC"
    )


def lake_writes_sql(names: Names, days: int = 7) -> str:
    """Who wrote or deleted objects of the lake's data buckets, per principal and bucket."""
    buckets = [names.bucket(zone) for zone in AUDITED_ZONES]
    return (
        f"WITH objects AS (\n  {_OBJECT}  FROM {_table(names)}\n"
        f"  WHERE {_days(days, '    ')}\n"
        f"    AND eventsource = 's3.amazonaws.com'\n"
        f"    AND eventname IN ({_quoted(WRITE_EVENTS)})\n"
        f"    AND errorcode IS NULL\n)\n"
        f"SELECT bucket, eventname, {_WHO},\n"
        "  count(*) AS events, min(eventtime) AS first_event, max(eventtime) AS last_event\n"
        f"FROM objects\nWHERE bucket IN ({_quoted(buckets)})\n"
        "GROUP BY 1, 2, 3, 4, 5\nORDER BY last_event DESC"
    )


def access_denied_sql(names: Names, hours: int = 24) -> str:
    """Every refused call (IAM, key policies, bucket policies, Lake Formation)."""
    return (
        f"SELECT eventtime, eventsource, eventname, errorcode, errormessage, {_WHO},\n"
        "  awsregion\n"
        f"FROM {_table(names)}\n"
        f"WHERE \"timestamp\" >= date_format(current_date - interval '1' day, '%Y/%m/%d')\n"
        f"  AND from_iso8601_timestamp(eventtime) >= current_timestamp - interval '{hours}' hour\n"
        "  AND (errorcode LIKE '%AccessDenied%' OR errorcode LIKE '%UnauthorizedOperation%'\n"
        "    OR errorcode = 'Forbidden')\n"
        "ORDER BY eventtime DESC\nLIMIT 1000"
    )


def settings_changes_sql(names: Names, days: int = 30) -> str:
    """Who changed IAM, KMS or Lake Formation (write management events; KMS's
    cryptographic calls excluded)."""
    return (
        f"SELECT eventtime, eventsource, eventname, {_WHO},\n"
        "  errorcode, requestparameters\n"
        f"FROM {_table(names)}\n"
        f"WHERE {_days(days)}\n"
        f"  AND eventsource IN ({_quoted(SETTINGS_SOURCES)})\n"
        "  AND readonly = 'false'\n"
        f"  AND NOT (eventsource = 'kms.amazonaws.com' AND eventname IN "
        f"({_quoted(KMS_CRYPTO_EVENTS)}))\n"
        "ORDER BY eventtime DESC"
    )


@dataclass(frozen=True)
class NamedQuery:
    construct_id: str
    name: str
    description: str
    sql: str


def named_queries(datasets: Sequence[Dataset], names: Names) -> tuple[NamedQuery, ...]:
    """The audit's named queries, in the platform's workgroup."""
    queries = [
        NamedQuery(
            "WritesAndDeletes",
            "audit: who wrote or deleted lake objects in the last 7 days",
            "S3 object writes and deletes on the lake's data buckets, per principal and bucket",
            lake_writes_sql(names),
        ),
        NamedQuery(
            "AccessDenied",
            "audit: access denied in the last 24 hours",
            "Every call refused by IAM, a key or bucket policy or Lake Formation",
            access_denied_sql(names),
        ),
        NamedQuery(
            "SettingsChanges",
            "audit: who changed IAM, KMS or Lake Formation settings (last 30 days)",
            "Write management events of IAM, KMS (not its cryptographic calls) and Lake Formation",
            settings_changes_sql(names),
        ),
    ]
    if any(ds.pii for ds in datasets):
        pii = sorted(ds.name for ds in datasets if ds.pii)
        queries.insert(
            0,
            NamedQuery(
                "PiiReads",
                "audit: who read PII-tagged objects in the last 7 days",
                f"GetObject on the raw and curated prefixes of {', '.join(pii)} "
                "(the datasets that declare pii: columns), per principal",
                pii_reads_sql(datasets, names),
            ),
        )
    return tuple(queries)
