"""The local platform's moto server lifecycle, and provisioning from the spec: idempotent,
and the same names and settings as the synthesized CloudFormation templates."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request

import boto3
import pytest
from moto import mock_aws

from dataplatform.bundle import stage_job_code
from dataplatform.naming import BUCKET_ZONES, Names
from dataplatform.runtime.local import endpoint, server
from dataplatform.runtime.local import provision as prov
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT
from tests.infra.conftest import ACCOUNT, synthesize

PLATFORM = load_spec(REPO_ROOT / "spec")
ENV = "dev"


# --- the server


def test_server_starts_on_loopback_survives_and_stops(tmp_path):
    info, started = server.up(tmp_path)
    try:
        assert started and info.endpoint.startswith("http://127.0.0.1:")
        assert server.status(tmp_path) == info
        again, started_again = server.up(tmp_path)  # `dp local up` twice is harmless
        assert (again, started_again) == (info, False)
        with urllib.request.urlopen(f"{info.endpoint}/moto-api/", timeout=2) as response:
            assert response.status == 200
        # Bound to 127.0.0.1 only: another local address of this machine is refused.
        other = _non_loopback_address()
        if other:
            with pytest.raises(OSError):
                socket.create_connection((other, info.port), timeout=1).close()
    finally:
        assert server.down(tmp_path)
    assert server.status(tmp_path) is None
    assert not server.down(tmp_path)


def test_the_server_keeps_connections_alive_and_counts_what_it_answers(tmp_path):
    import http.client
    import json

    from dataplatform.runtime.local.moto_main import STATS_PATH

    info, _ = server.up(tmp_path)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", info.port, timeout=5)

        def stats() -> int:
            connection.request("GET", STATS_PATH)
            response = connection.getresponse()
            assert response.getheader("Connection", "").lower() != "close"
            return json.loads(response.read())["requests"]

        before = stats()
        s3 = server.client("s3", info, "eu-west-1")
        for _ in range(3):
            s3.list_buckets()
        assert stats() == before + 3  # the same connection throughout: kept alive
    finally:
        server.down(tmp_path)


def test_reset_empties_the_server_and_the_state_tied_to_it_but_keeps_it_running(tmp_path):
    info, _ = server.up(tmp_path)
    try:
        s3 = server.client("s3", info, "eu-west-1")
        s3.create_bucket(
            Bucket="left-over", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        (tmp_path / "firehose").mkdir()
        (tmp_path / "firehose" / "telecom_events.json").write_text("{}")  # a shard checkpoint
        (tmp_path / "build").mkdir()
        # a local endpoint serving a model of the registry about to be emptied
        serving = subprocess.Popen(["sleep", "60"])
        (tmp_path / endpoint.STATE_FILE).write_text(
            json.dumps({"pid": serving.pid, "port": 1, "started_at": 0.0, "endpoints": {}})
        )

        assert server.reset(tmp_path) == info
        assert s3.list_buckets()["Buckets"] == []
        assert not (tmp_path / "firehose").exists()  # it pointed into the old streams
        assert (tmp_path / "build").is_dir() and server.status(tmp_path) == info
        serving.wait(timeout=10)  # stopped (and reaped by the stop: no exit status here)
        assert endpoint.status(tmp_path) is None
    finally:
        server.down(tmp_path)


def test_the_servers_indexed_s3_listing_answers_as_plain_moto_does(empty_platform):
    """moto_main keeps each bucket's key names sorted to answer LIST by prefix; the same
    seeded history of puts, overwrites and deletes, in a versioned bucket on the server,
    must list as S3 lists it: the pages plain moto gives for the live keys (in a bucket
    without versioning, where a delete removes the key; plain moto's versioned buckets
    list prefixes that hold only deleted keys, S3 does not)."""
    import random

    home, info = empty_platform
    rng = random.Random(7)
    names = [
        f"t/dt=2026-11-{d:02d}/hour={h:02d}/part-{p}.json"
        for d in range(1, 6)
        for h in range(0, 24, 5)
        for p in range(2)
    ]
    names += ["t/dt=2026-11-01/", "t/top.json", "u/x", "t", "t/dt=2026-11-010/odd"]
    history = []
    for _ in range(400):
        name = rng.choice(names)
        history.append(("delete" if rng.random() < 0.3 else "put", name))
    queries = [
        dict(Prefix=p, Delimiter=d, MaxKeys=m, StartAfter=a)
        for p in ("", "t/", "t/dt=2026-11-01", "t/dt=2026-11-03/hour=10/", "v/")
        for d in ("", "/", "hour=")
        for m in (1000, 7)
        for a in ("", "t/dt=2026-11-01/", "t/dt=2026-11-03/hour=10/part-0.json")
    ]
    queries += [
        dict(Prefix=p, Delimiter="/", MaxKeys=m, StartAfter=a)  # S3A's probes: max-keys 2
        for p in ("t/", "t", "u/")
        for m in (0, 2)
        for a in ("", "t/dt=2026-11-02")
    ]

    def replay_and_list(s3, versioned: bool) -> list:
        s3.create_bucket(
            Bucket="listing", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        if versioned:
            s3.put_bucket_versioning(
                Bucket="listing", VersioningConfiguration={"Status": "Enabled"}
            )
        pages = []
        for step, (action, name) in enumerate(history, 1):
            if action == "put":
                s3.put_object(Bucket="listing", Key=name, Body=name.encode())
            else:
                s3.delete_object(Bucket="listing", Key=name)
            if step % 200 == 0:  # listings between changes, as a Spark job makes them
                list_all(s3, pages)
        return pages

    def list_all(s3, pages: list) -> None:
        for query in queries:
            kwargs = {k: v for k, v in query.items() if v != ""}
            token = None
            while True:
                page = s3.list_objects_v2(
                    Bucket="listing", **kwargs, **({"ContinuationToken": token} if token else {})
                )
                pages.append(
                    (
                        query,
                        [c["Key"] for c in page.get("Contents", [])],
                        [c["Prefix"] for c in page.get("CommonPrefixes", [])],
                        page["KeyCount"],
                    )
                )
                token = page.get("NextContinuationToken")
                if not token:
                    break
            v1 = s3.list_objects(
                Bucket="listing", **{k: v for k, v in kwargs.items() if k != "StartAfter"}
            )
            pages.append(
                (
                    query,
                    [c["Key"] for c in v1.get("Contents", [])],
                    [c["Prefix"] for c in v1.get("CommonPrefixes", [])],
                    v1["IsTruncated"],
                )
            )

    served = replay_and_list(server.client("s3", info, "eu-west-1"), versioned=True)
    with mock_aws():
        plain = replay_and_list(boto3.client("s3", region_name="eu-west-1"), versioned=False)
    assert served == plain
    assert any(keys for _, keys, _, _ in served) and any(prefixes for _, _, prefixes, _ in served)


def test_the_servers_dynamodb_answers_as_plain_moto_does(empty_platform):
    """moto_main writes DynamoDB's attribute values straight to JSON instead of through
    moto's model walk: the same writes and reads, with every attribute type (binary, sets,
    nested maps and lists, NULL, booleans, empty values, unicode), answer on the server as
    they do in plain moto."""
    home, info = empty_platform
    item = {
        "pk": {"S": "customer-1"},
        "sk": {"S": "events"},
        "text": {"S": "déjà vu ✓"},
        "empty": {"S": ""},
        "number": {"N": "-12.50"},
        "big": {"N": "12345678901234567890"},
        "blob": {"B": bytes(range(256))},
        "strings": {"SS": ["b", "a"]},
        "numbers": {"NS": ["1", "2.5"]},
        "blobs": {"BS": [b"\x00\x01", b"zz"]},
        "map": {
            "M": {
                "inner": {"L": [{"N": "1"}, {"S": "x"}, {"NULL": True}, {"BOOL": False}]},
                "deeper": {"M": {"flag": {"BOOL": True}, "raw": {"B": b"\xff"}}},
                "none": {"M": {}},
            }
        },
        "list": {"L": []},
        "nothing": {"NULL": True},
        "yes": {"BOOL": True},
    }
    others = [
        {"pk": {"S": f"customer-{i}"}, "sk": {"S": "events"}, "n": {"N": str(i)}}
        for i in range(2, 30)
    ]

    def calls(dynamodb) -> list:
        dynamodb.create_table(
            TableName="answers",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        answers = [dynamodb.put_item(TableName="answers", Item=item)]
        for start in range(0, len(others), 25):
            answers.append(
                dynamodb.batch_write_item(
                    RequestItems={
                        "answers": [{"PutRequest": {"Item": i}} for i in others[start : start + 25]]
                    }
                )
            )
        keys = [{"pk": i["pk"], "sk": i["sk"]} for i in [item, *others]]
        answers += [
            dynamodb.get_item(TableName="answers", Key=keys[0], ConsistentRead=True),
            dynamodb.get_item(TableName="answers", Key={"pk": {"S": "nobody"}, "sk": {"S": "x"}}),
            dynamodb.batch_get_item(
                RequestItems={"answers": {"Keys": keys, "ConsistentRead": True}}
            ),
            dynamodb.batch_get_item(
                RequestItems={
                    "answers": {
                        "Keys": keys[:3],
                        "ProjectionExpression": "pk, map.deeper, #l",
                        "ExpressionAttributeNames": {"#l": "list"},
                    }
                }
            ),
            dynamodb.query(
                TableName="answers",
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "customer-1"}},
            ),
            dynamodb.scan(TableName="answers", Limit=7),
            dynamodb.update_item(
                TableName="answers",
                Key=keys[0],
                UpdateExpression="SET #m.added = :v",
                ExpressionAttributeNames={"#m": "map"},
                ExpressionAttributeValues={":v": {"L": [{"SS": ["q"]}, {"M": {}}]}},
                ReturnValues="ALL_NEW",
            ),
            dynamodb.delete_item(TableName="answers", Key=keys[1], ReturnValues="ALL_OLD"),
        ]
        for answer in answers:
            answer.pop("ResponseMetadata", None)
        return answers

    served = calls(server.client("dynamodb", info, "eu-west-1"))
    with mock_aws():
        plain = calls(boto3.client("dynamodb", region_name="eu-west-1"))
    assert served == plain
    assert served[0] == {} and served[3]["Item"] == item  # what was put comes back whole


def test_commands_without_a_running_platform_say_how_to_start_it(tmp_path):
    with pytest.raises(server.PlatformNotRunning, match="start it with `dp local up`"):
        server.require(tmp_path)


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


# --- provisioning (moto in-process: the control plane is what moto keeps faithfully)


@pytest.fixture(scope="module")
def settings():
    return PLATFORM.environment(ENV)


@pytest.fixture(scope="module")
def names(settings):
    return Names.for_environment(PLATFORM, settings, account=ACCOUNT)


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory, settings, names):
    with mock_aws():

        def clients(service):
            return boto3.client(service, region_name=settings.region)

        job_code = stage_job_code(PLATFORM, tmp_path_factory.mktemp("build"))
        first = prov.provision(PLATFORM, settings, names, clients, job_code_dir=job_code)
        second = prov.provision(PLATFORM, settings, names, clients, job_code_dir=job_code)
        yield first, second, clients


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    return synthesize(ENV, False, tmp_path_factory.mktemp("cdk")).templates


def test_provisioning_twice_creates_nothing_the_second_time(provisioned):
    first, second, _ = provisioned
    assert set(first) >= {
        "bucket",
        "stream",
        "delivery_stream",
        "database",
        "table",
        "crawler",
        "job",
        "workgroup",
        "kms_alias",
        "security_configuration",
    }
    assert second == {}


def test_lake_buckets_default_to_the_lake_key_and_are_versioned(provisioned, names):
    _, _, clients = provisioned
    s3, kms = clients("s3"), clients("kms")
    key_arn = kms.describe_key(KeyId=names.lake_key_alias)["KeyMetadata"]["Arn"]
    for zone in BUCKET_ZONES:
        bucket = names.bucket(zone)
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ][0]
        expected = (
            {"SSEAlgorithm": "AES256"}
            if zone == "access-logs"
            else {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
        )
        assert rule["ApplyServerSideEncryptionByDefault"] == expected
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        assert (
            s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"][
                "RestrictPublicBuckets"
            ]
            is True
        )


def test_job_code_is_uploaded_where_the_glue_jobs_point(provisioned, names):
    _, _, clients = provisioned
    glue, s3 = clients("glue"), clients("s3")
    for ds in PLATFORM.datasets:
        job = glue.get_job(JobName=names.curate_job(ds.name))["Job"]
        script = job["Command"]["ScriptLocation"].removeprefix(f"s3://{names.artifacts_bucket}/")
        library = job["DefaultArguments"]["--extra-py-files"].removeprefix(
            f"s3://{names.artifacts_bucket}/"
        )
        body = s3.get_object(Bucket=names.artifacts_bucket, Key=script)["Body"].read()
        assert b"from dataplatform.jobs.curate_run import main" in body
        assert s3.head_object(Bucket=names.artifacts_bucket, Key=library)["ContentLength"] > 1000


# --- parity with the synthesized templates


def _template_values(templates, kind, type_, *path):
    values = set()
    for resource in templates[kind]["Resources"].values():
        if resource["Type"] == type_:
            value = resource["Properties"]
            for step in path:
                value = value[step]
            values.add(value)
    return values


def test_local_names_equal_the_deployed_names(provisioned, templates, names):
    _, _, clients = provisioned
    s3, kinesis, firehose, glue, athena, kms = (
        clients(s) for s in ("s3", "kinesis", "firehose", "glue", "athena", "kms")
    )
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == _template_values(
        templates, "storage", "AWS::S3::Bucket", "BucketName"
    )
    assert set(kinesis.list_streams()["StreamNames"]) == _template_values(
        templates, "streaming", "AWS::Kinesis::Stream", "Name"
    )
    assert set(firehose.list_delivery_streams()["DeliveryStreamNames"]) == _template_values(
        templates, "streaming", "AWS::KinesisFirehose::DeliveryStream", "DeliveryStreamName"
    )
    assert {d["Name"] for d in glue.get_databases()["DatabaseList"]} == _template_values(
        templates, "catalog", "AWS::Glue::Database", "DatabaseInput", "Name"
    )
    assert set(glue.list_crawlers()["CrawlerNames"]) == _template_values(
        templates, "catalog", "AWS::Glue::Crawler", "Name"
    )
    assert set(glue.list_jobs()["JobNames"]) == _template_values(
        templates, "catalog", "AWS::Glue::Job", "Name"
    )
    assert {
        c["Name"] for c in glue.get_security_configurations()["SecurityConfigurations"]
    } == _template_values(templates, "catalog", "AWS::Glue::SecurityConfiguration", "Name")
    assert names.workgroup in {w["Name"] for w in athena.list_work_groups()["WorkGroups"]}
    assert {names.workgroup} == _template_values(
        templates, "analytics", "AWS::Athena::WorkGroup", "Name"
    )
    assert names.lake_key_alias in {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
    assert {names.lake_key_alias} == _template_values(
        templates, "storage", "AWS::KMS::Alias", "AliasName"
    )


def test_local_tables_have_the_deployed_columns_locations_and_partitions(
    provisioned, templates, names
):
    _, _, clients = provisioned
    glue = clients("glue")
    database_zone = {
        lid: r["Properties"]["DatabaseInput"]["Name"].rsplit("_", 1)[1]
        for lid, r in templates["catalog"]["Resources"].items()
        if r["Type"] == "AWS::Glue::Database"
    }
    deployed = {}
    for resource in templates["catalog"]["Resources"].values():
        if resource["Type"] == "AWS::Glue::Table":
            table = resource["Properties"]["TableInput"]
            zone = database_zone[resource["Properties"]["DatabaseName"]["Ref"]]
            deployed[(zone, table["Name"])] = table
    assert ("curated", names.quarantine_table("telecom_events")) in deployed
    for (zone, name), table in deployed.items():
        local = glue.get_table(DatabaseName=names.database(zone), Name=name)["Table"]
        columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
        assert [(c["Name"], c["Type"]) for c in local["StorageDescriptor"]["Columns"]] == columns
        assert [p["Name"] for p in local["PartitionKeys"]] == [
            p["Name"] for p in table["PartitionKeys"]
        ]
        assert (
            local["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
            == table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
        )
        location = local["StorageDescriptor"]["Location"]
        expected_prefix = (
            f"_quarantine/{name.removesuffix('_quarantine')}/"
            if name.endswith("_quarantine")
            else f"{name}/"
        )
        assert location == f"s3://{names.bucket(zone)}/{expected_prefix}"
        for key in ("projection.dt.range", "projection.hour.range", "skip.header.line.count"):
            assert local["Parameters"].get(key) == table.get("Parameters", {}).get(key)


def test_local_lifecycle_rules_equal_the_deployed_ones(provisioned, templates, names, settings):
    _, _, clients = provisioned
    s3 = clients("s3")
    deployed = {
        r["Properties"]["BucketName"]: r["Properties"]["LifecycleConfiguration"]["Rules"]
        for r in templates["storage"]["Resources"].values()
        if r["Type"] == "AWS::S3::Bucket"
    }
    for bucket, rules in deployed.items():
        local = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
        assert set(local) == {r["Id"] for r in rules}, bucket
        for rule in rules:
            mine = local[rule["Id"]]
            if "Transitions" in rule:
                assert [
                    (t["StorageClass"], t["TransitionInDays"]) for t in rule["Transitions"]
                ] == [(t["StorageClass"], t["Days"]) for t in mine["Transitions"]]
            if "ExpirationInDays" in rule:
                assert mine["Expiration"]["Days"] == rule["ExpirationInDays"]
            if "NoncurrentVersionExpiration" in rule:
                assert (
                    mine["NoncurrentVersionExpiration"]["NoncurrentDays"]
                    == rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
                )


def test_local_job_arguments_equal_the_deployed_ones(provisioned, templates, names):
    _, _, clients = provisioned
    glue = clients("glue")
    for resource in templates["catalog"]["Resources"].values():
        if resource["Type"] != "AWS::Glue::Job":
            continue
        deployed = resource["Properties"]["DefaultArguments"]
        local = glue.get_job(JobName=resource["Properties"]["Name"])["Job"]["DefaultArguments"]
        for key, value in local.items():
            if key == "--extra-py-files":
                continue  # the template's is a Join over the bucket reference
            assert deployed[key] == value, key


def test_the_servers_kinesis_shards_answer_as_plain_moto_does():
    """moto_main finds a shard's first and last sequence numbers and the records after a
    position by number, not by walking the shard: on the same shards (one filled by puts,
    one left by a split), every position and limit gives what moto's own methods give."""
    from moto.kinesis.models import Shard

    from dataplatform.runtime.local import moto_main

    moto_main._moto_get_records = Shard.get_records  # the fallback, as installed
    filled = Shard(0, 0, 2**128 - 1)
    for i in range(40):
        filled.put_record(f"customer-{i % 7}", f"record {i}", str(i))
    empty = Shard(1, 0, 2**128 - 1)
    gapped = Shard(2, 0, 2**128 - 1)  # not 1, 2, 3... (moto never makes one): moto's walk
    for i in range(10):
        gapped.put_record("k", f"r{i}", str(i))
    del gapped.records[4]
    for shard in (filled, empty, gapped):
        assert moto_main.shard_min_sequence_number(shard) == Shard.get_min_sequence_number(shard)
        assert moto_main.shard_max_sequence_number(shard) == Shard.get_max_sequence_number(shard)
        for position in (0, 1, 5, 17, 39, 40, 41, 100):
            for limit in (None, 0, 1, 3, 25, 1000):
                ours = moto_main.shard_records_after(shard, str(position), limit)
                theirs = Shard.get_records(shard, str(position), limit)
                assert ours == theirs, (shard.shard_id, position, limit)
