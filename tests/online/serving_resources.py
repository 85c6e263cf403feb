"""What the scorer writes to, made in moto for the scorer's unit tests (in-process moto,
no deployment): the online features and scores tables, the event bus, the interventions
queue and the interventions rule, with the serving stack's keys and settings. The local
platform itself gets them from the synthesized serving stack (runtime/local/deploy/)."""

from __future__ import annotations

import json

from dataplatform.naming import Names
from dataplatform.spec import SERVING_ACTIONS


def ensure_serving(clients, names: Names, key_arn: str, created=None, *, alerts_topic=None) -> None:
    """What real-time scoring writes to, as the serving stack creates it: the online
    features and scores tables (KMS, TTL on expires_at), the event bus and the rule that
    sends the scorers' events (every action's detail-type, as the stack's rule for the
    shipped models) to the interventions queue and to the alerts topic."""
    dynamodb = clients("dynamodb")
    existing = set(dynamodb.list_tables().get("TableNames", []))
    for table in (names.online_features_table, names.scores_table):
        if table in existing:
            continue
        dynamodb.create_table(
            TableName=table,
            KeySchema=[
                {"AttributeName": "customer_id", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "customer_id", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn},
        )
        dynamodb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
        if created is not None:
            created["dynamodb_table"].append(table)
    events, sqs = clients("events"), clients("sqs")
    buses = {b["Name"] for b in events.list_event_buses().get("EventBuses", [])}
    if names.event_bus not in buses:
        events.create_event_bus(Name=names.event_bus)
        if created is not None:
            created["event_bus"].append(names.event_bus)
    queue_url = sqs.create_queue(
        QueueName=names.interventions_queue, Attributes={"KmsMasterKeyId": key_arn}
    )["QueueUrl"]  # idempotent with the same attributes
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    rule = names.interventions_rule
    rules = {r["Name"] for r in events.list_rules(EventBusName=names.event_bus).get("Rules", [])}
    if rule not in rules:
        events.put_rule(
            Name=rule,
            EventBusName=names.event_bus,
            EventPattern=json.dumps(
                {
                    "source": ["dataplatform.scoring"],
                    "detail-type": sorted(set(SERVING_ACTIONS.values())),
                }
            ),
        )
        if created is not None:
            created["event_rule"].append(rule)
    targets: list[dict] = [{"Id": "interventions", "Arn": queue_arn}]
    if alerts_topic:
        targets.append(
            {
                "Id": "alerts",
                "Arn": alerts_topic,
                "InputTransformer": {
                    "InputPathsMap": {"detail-type": "$.detail-type", "detail": "$.detail"},
                    "InputTemplate": f'"<detail-type> on {names.event_bus}: <detail>"',
                },
            }
        )
    events.put_targets(Rule=rule, EventBusName=names.event_bus, Targets=targets)
