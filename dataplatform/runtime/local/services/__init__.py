"""The real work behind the local endpoint's AWS APIs, where moto only pretends.

moto answers the control plane faithfully (S3, Kinesis, DynamoDB, the Glue catalog, the
SageMaker registry, ...) but runs nothing: Athena returns no rows, Glue job runs succeed
without running, and so on (docs/moto.md). Each service here answers some operations of
one API itself, with the platform's local compute, whoever calls them: the AWS CLI, boto3,
awswrangler, a producer's app, the state machine, or `dp`. The dispatcher (dispatch.py)
sends them their operations and moto everything else.

| API | operations answered here | module |
|---|---|---|
| Athena | Start/Get/BatchGet/List/StopQueryExecution, GetQueryResults, GetQueryRuntimeStatistics | athena.py (DuckDB), athena_writes.py (CTAS, UNLOAD) |
| SageMaker | Create/Describe/List/StopTrainingJob; Create/Update/Delete/Describe/ListEndpoint(s); sagemaker-runtime's InvokeEndpoint | sagemaker.py (the API), sagemaker_training.py (script mode), sagemaker_serving.py (the serving code) |
"""

from __future__ import annotations

from pathlib import Path

from dataplatform.runtime.local.services.base import Server, Service


def services(endpoint: str, home: Path) -> list[Service]:
    """The services of a server at `endpoint`, keeping their records under `home`."""
    from dataplatform.runtime.local.services.athena import Athena
    from dataplatform.runtime.local.services.sagemaker import SageMaker

    server = Server(endpoint=endpoint, home=home)
    return [Athena(server), SageMaker(server)]
