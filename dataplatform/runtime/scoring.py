"""What the stream scorer did, read back from what it leaves, the same on both targets.

The scorer Lambda runs on its own (its event source mapping reads the stream), so `dp score`
does not score: it reports. Each batch's JSON log line (lambdas/stream_scorer/handler.py:
records, score ids, interventions, latencies, error) is read from CloudWatch Logs, the
scores it names from the scores table, and the batches given up on from the on-failure
queue's depth. AWS and the local endpoint keep all three the same way.
"""

from __future__ import annotations

import json
from datetime import datetime

from dataplatform.naming import Names
from dataplatform.runtime.results import ScoringRun


def _batch_lines(logs, group: str, since: datetime) -> list[dict]:
    lines = []
    try:
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=group, startTime=int(since.timestamp() * 1000)
        )
        for page in pages:
            for event in page.get("events", []):
                message = event.get("message", "").strip()
                if not message.startswith("{"):
                    continue
                try:
                    line = json.loads(message)
                except ValueError:
                    continue
                if isinstance(line, dict) and "records" in line and "score_ids" in line:
                    lines.append(line)
    except logs.exceptions.ResourceNotFoundException:  # no batch yet: no log group
        return []
    return lines


def _scores(dynamodb, table: str, model: str, score_ids: list[str]) -> list[dict]:
    """The score items, as they are now (a later batch may have rewritten one)."""
    from dataplatform.online.scorer import plain_item

    keys, seen = [], set()
    for score_id in score_ids:
        if score_id in seen:
            continue
        seen.add(score_id)
        _, customer, as_of = score_id.rsplit("#", 2)
        keys.append({"customer_id": {"S": customer}, "sk": {"S": f"score#{model}#{as_of}"}})
    found: list[dict] = []
    for start in range(0, len(keys), 100):
        request = {table: {"Keys": keys[start : start + 100]}}
        while request:
            answer = dynamodb.batch_get_item(RequestItems=request)
            found += [plain_item(i) for i in answer.get("Responses", {}).get(table, [])]
            request = answer.get("UnprocessedKeys") or {}
    order = {score_id: i for i, score_id in enumerate(score_ids)}
    return sorted(found, key=lambda s: order.get(s["score_id"], 0))


def given_up(sqs, names: Names, model: str) -> int:
    """Batches in the scorer's on-failure queue (each one a range of the stream to replay)."""
    try:
        url = sqs.get_queue_url(QueueName=names.scorer_failures_queue(model))["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return 0
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0))


def activity(platform, model: str, *, since: datetime) -> ScoringRun:
    """What the model's scorer did since `since`, from its log lines; their scores from
    the scores table."""
    names: Names = platform.names
    run = ScoringRun(model=model)
    lines = _batch_lines(platform.client("logs"), names.scorer_log_group(model), since)
    score_ids: list[str] = []
    for line in lines:
        run.records += int(line.get("done", line["records"]))
        score_ids += line.get("score_ids") or []
        run.flagged += line.get("interventions") or []
        run.latencies += line.get("latencies") or []
        for reason, count in (line.get("left_out") or {}).items():
            run.left_out[reason] = run.left_out.get(reason, 0) + int(count)
        if line.get("error"):
            run.errors.append(line["error"])
    run.scores = _scores(platform.client("dynamodb"), names.scores_table, model, score_ids)
    run.scored = len(score_ids)
    waiting = given_up(platform.client("sqs"), names, model)
    if waiting:
        run.failed.append(
            f"{waiting} batch(es) given up after their retries, described in the queue "
            f"{names.scorer_failures_queue(model)} (replay their ranges of the stream)"
        )
    return run
