"""The platform's SQS queues: KMS with a customer key (data keys reused for an hour),
TLS only, kept 14 days (SQS's longest), removed as the environment's data is."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.constructs.removal import DataRemoval


def encrypted_queue(
    scope: Construct, id: str, *, queue_name: str, key: kms.IKey, removal: DataRemoval, **more: Any
) -> sqs.Queue:
    """`more`: the queue's other properties (visibility timeout, its dead-letter queue)."""
    return sqs.Queue(
        scope,
        id,
        queue_name=queue_name,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        data_key_reuse=Duration.hours(1),
        enforce_ssl=True,
        retention_period=Duration.days(14),
        removal_policy=removal.policy,
        **more,
    )
