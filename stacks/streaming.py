"""StreamingStack: for every dataset with `ingestion: stream`, a KMS-encrypted Kinesis
stream delivered by Firehose into the raw zone, partitioned by event time."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Stack
from constructs import Construct

from dataplatform.naming import Names, pascal_case
from dataplatform.spec import Dataset, Environment
from stacks.constructs.lake import Lake
from stacks.constructs.removal import DataRemoval
from stacks.constructs.stream_to_lake import StreamToLake


class StreamingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: Names,
        settings: Environment,
        lake: Lake,
        datasets: tuple[Dataset, ...],
        removal: DataRemoval,
        transform_code_dir: Path,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal.annotate(self)
        self.ingestion = {
            ds.name: StreamToLake(
                self,
                pascal_case(ds.name),
                dataset=ds,
                names=names,
                settings=settings,
                lake=lake,
                removal=removal,
                transform_code_dir=transform_code_dir,
            )
            for ds in datasets
        }
