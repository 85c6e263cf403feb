"""Where moto_main answered S3 differently from moto's own server (found by `make
conformance`, moto's test suite in server mode against both): keys whose names need the
path as sent, metadata names with underscores, and bucket creation dates after a restart.
Each test runs its own server on a free port with its own state folder."""

from __future__ import annotations

import time

import boto3
import pytest

from dataplatform.runtime.local import server

REGION = "eu-west-1"


@pytest.fixture
def home(tmp_path):
    server.up(tmp_path)
    try:
        yield tmp_path
    finally:
        server.down(tmp_path)


def s3(home):
    info = server.require(home)
    return boto3.client(
        "s3",
        endpoint_url=info.endpoint,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


@pytest.mark.parametrize(
    "key",
    [
        "events/dt=2026-11-20 12%3A30%3A00/part-0.parquet",  # a Hive-escaped partition value
        "odd/what?is=this",
        "odd/a%2Fb",
        "odd/100%25",
    ],
)
def test_a_key_is_stored_under_the_name_it_was_given(home, key):
    client = s3(home)
    client.create_bucket(Bucket="keys", CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_object(Bucket="keys", Key=key, Body=b"x")
    assert [o["Key"] for o in client.list_objects_v2(Bucket="keys")["Contents"]] == [key]
    assert client.get_object(Bucket="keys", Key=key)["Body"].read() == b"x"


def test_metadata_names_keep_their_underscores_across_a_restart(home):
    client = s3(home)
    client.create_bucket(Bucket="meta", CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_object(Bucket="meta", Key="k", Body=b"x", Metadata={"my_key": "1", "other-key": "2"})
    assert client.head_object(Bucket="meta", Key="k")["Metadata"] == {
        "my_key": "1",
        "other-key": "2",
    }
    server.down(home)
    server.up(home)
    assert s3(home).head_object(Bucket="meta", Key="k")["Metadata"] == {
        "my_key": "1",
        "other-key": "2",
    }


def test_a_buckets_creation_date_survives_a_restart(home):
    client = s3(home)
    client.create_bucket(Bucket="dated", CreateBucketConfiguration={"LocationConstraint": REGION})
    before = {b["Name"]: b["CreationDate"] for b in client.list_buckets()["Buckets"]}
    time.sleep(1.1)  # a restart a second later: moto's wall clock would show it
    server.down(home)
    server.up(home)
    after = {b["Name"]: b["CreationDate"] for b in s3(home).list_buckets()["Buckets"]}
    assert after == before
