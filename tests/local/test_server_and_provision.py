"""The local platform's moto server: its lifecycle, and its answers where it departs from
plain moto's code (S3 listings, DynamoDB's JSON, Kinesis shards) compared with plain moto's.
Provisioning from the spec: tests/local/test_provision_parity.py."""

from __future__ import annotations

import socket
import urllib.request

import boto3
import pytest
from moto import mock_aws

from dataplatform.runtime.local import server
from dataplatform.spec import load_spec
from stacks.platform import REPO_ROOT

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
        # a shard checkpoint of the local Firehose, and a job run's log
        checkpoint = tmp_path / "services" / "firehose" / "checkpoints" / "eu-west-1-s.json"
        checkpoint.write_text("{}")
        (tmp_path / "runs").mkdir()
        (tmp_path / "runs" / "jr_1.log").write_text("a run of the old platform")
        (tmp_path / "build").mkdir()
        # an endpoint of the local SageMaker (its model has no model data: it failed)
        sagemaker = server.client("sagemaker", info, "eu-west-1")
        sagemaker.create_model(
            ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r", PrimaryContainer={}
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName="m",
            ProductionVariants=[
                {
                    "VariantName": "v",
                    "ModelName": "m",
                    "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
                }
            ],
        )
        sagemaker.create_endpoint(EndpointName="m", EndpointConfigName="m")
        assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == ["m"]

        assert server.reset(tmp_path) == info
        assert s3.list_buckets()["Buckets"] == []
        assert not checkpoint.exists()  # it pointed into the old streams
        assert not (tmp_path / "runs").exists()
        assert (tmp_path / "build").is_dir() and server.status(tmp_path) == info
        assert sagemaker.list_endpoints()["Endpoints"] == []  # the services' records too
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
