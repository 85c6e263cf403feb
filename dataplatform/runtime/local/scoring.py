"""The stream scorer on the local platform: what the Lambda's event source mapping does on
AWS, done here. It reads the served model's stream from its own checkpoint (one per model,
like an enhanced fan-out consumer's position), hands batches to the same code the Lambda
runs (dataplatform.online.scorer.score_batch) with the local clients (moto's DynamoDB,
EventBridge and Kinesis; the local endpoint for InvokeEndpoint), and moves the checkpoint
past a batch only as far as its partial batch response allows, retrying the rest a few
times as the mapping's bounded retries do."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataplatform.online.scorer import (
    BATCH_SIZE,
    MAX_RETRIES,
    BatchResult,
    ScorerConfig,
    StreamRecord,
    score_batch,
)
from dataplatform.runtime.local import locks
from dataplatform.runtime.local.firehose import load_checkpoint, save_checkpoint, stream_created_ms
from dataplatform.runtime.results import ScoringRun
from dataplatform.spec import Model


def scorer_config(local, model: Model) -> ScorerConfig:
    serving = model.serving
    if serving is None:
        raise KeyError(f"{model.name} declares no serving: section; add one to serve it")
    names = local.names
    return ScorerConfig(
        model=model.name,
        endpoint=names.endpoint(model.name),
        features_table=names.online_features_table,
        scores_table=names.scores_table,
        event_bus=names.event_bus,
        threshold=serving.threshold,
        action=serving.action,
        dataset=local.dataset(serving.stream),
        scores_stream=names.stream(serving.scores_dataset) if serving.scores_dataset else None,
    )


def checkpoint_path(local, model: str) -> Path:
    return Path(local.state_dir) / "scoring" / f"{model}.json"


def follow(
    local,
    model: Model,
    clients: Callable[[str], Any],
    *,
    progress: Callable[[str], None] | None = None,
    batch_size: int = BATCH_SIZE,
    from_start: bool = False,
) -> ScoringRun:
    """Score everything on the model's stream after its checkpoint (from the stream's start
    with `from_start`: a replay), then return."""
    config = scorer_config(local, model)
    kinesis = clients("kinesis")
    stream = local.names.stream(config.dataset.name)
    path = checkpoint_path(local, model.name)
    run = ScoringRun(model=model.name)
    started = time.perf_counter()
    with locks.exclusive(path.with_suffix(".lock")):
        created = stream_created_ms(kinesis, stream)
        positions = {} if from_start else load_checkpoint(path, stream, created)
        for shard in shard_ids(kinesis, stream):
            for batch in stream_batches(kinesis, stream, shard, positions.get(shard), batch_size):
                done = _score_with_retries(batch, clients, config, run)
                if done is None:
                    break  # given up: the rest of the shard waits for the next run
                positions[shard] = done
                save_checkpoint(path, stream, positions, created)
                if progress is not None:
                    progress(
                        f"{run.records:,} records, {run.scored:,} scored, {len(run.flagged):,} flagged"
                    )
    run.seconds = time.perf_counter() - started
    return run


def _score_with_retries(
    batch: list[StreamRecord], clients, config: ScorerConfig, run: ScoringRun
) -> str | None:
    """The batch's last sequence number once it is scored, or None when it kept failing."""
    pending = batch
    for _attempt in range(1 + MAX_RETRIES):
        result: BatchResult = score_batch(pending, clients, config)
        finished = time.time()
        done_upto = (
            len(pending)
            if result.failed_from is None
            else [r.record_id for r in pending].index(result.failed_from)
        )
        run.records += done_upto
        for reason, count in result.left_out.items():
            run.left_out[reason] = run.left_out.get(reason, 0) + count
        run.scored += len(result.scored)
        run.scores += result.scored
        run.flagged += result.flagged
        run.latencies += [finished - r.arrived for r in pending[:done_upto] if r.arrived]
        if result.failed_from is None:
            return batch[-1].record_id
        pending = pending[done_upto:]
    run.failed.append(f"{pending[0].record_id}: {result.error}")
    return None


def shard_ids(kinesis, stream: str) -> list[str]:
    return sorted(s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"])


def stream_batches(kinesis, stream: str, shard: str, after: str | None, size: int):
    iterator = kinesis.get_shard_iterator(
        StreamName=stream,
        ShardId=shard,
        **(
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
            if after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        ),
    )["ShardIterator"]
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=size)
        records = page.get("Records", [])
        if records:
            yield [
                StreamRecord(
                    record_id=r["SequenceNumber"],
                    data=r["Data"],
                    arrived=r["ApproximateArrivalTimestamp"].timestamp()
                    if hasattr(r.get("ApproximateArrivalTimestamp"), "timestamp")
                    else None,
                )
                for r in records
            ]
        if not records or page.get("MillisBehindLatest", 0) == 0 and len(records) < size:
            return
        iterator = page.get("NextShardIterator")
