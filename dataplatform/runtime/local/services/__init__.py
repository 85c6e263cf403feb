"""The real work behind the local endpoint's AWS APIs, where moto only pretends.

moto answers the control plane faithfully (S3, Kinesis, DynamoDB, the Glue catalog, the
SageMaker registry, ...) but runs nothing: Athena returns no rows, Glue job runs succeed
without running, and so on (docs/moto.md). Each service here answers some operations of
one API itself, with the platform's local compute, whoever calls them: the AWS CLI, boto3,
awswrangler, a producer's app, the state machine, or `dp`. The dispatcher (dispatch.py)
sends them their operations and moto everything else.

| API | operations answered here | module |
|---|---|---|
| Athena | Start/Get/BatchGet/List/StopQueryExecution, GetQueryResults, GetQueryRuntimeStatistics; OPTIMIZE and VACUUM of Iceberg tables | athena.py (DuckDB), athena/iceberg.py (Iceberg reads), athena/maintenance.py (OPTIMIZE, VACUUM), athena_writes.py (CTAS, UNLOAD), lakeformation.py (the signer's grants) |
| Glue | Start/Get/BatchStop job runs on the local Spark; Start/Stop/Get crawlers, GetCrawlerMetrics, ListCrawls; CreateTable with OpenTableFormatInput (Iceberg metadata), UpdateTable's VersionId check | glue.py, glue_iceberg.py, spark.py (runtime/local/crawler.py, glue_job.py, spark_service.py) |
| EMR | AddJobFlowSteps and RunJobFlow's steps on the local Spark; Describe/List/CancelSteps; the clusters' state (moto keeps the clusters) | emr.py, spark.py |
| Lambda | Invoke; Create/Get/Update/Delete/ListEventSourceMappings, polled in the background | lambda_.py (runtime/local/lambda_worker.py) |
| EventBridge | rules' Lambda, SNS and Step Functions targets (moto delivers to the others) | events.py |
| CloudWatch | PutMetricData evaluates the alarms of the metrics put; SetAlarmState's state changes put the state-change event on the default bus and run the SNS actions; alarms start at INSUFFICIENT_DATA (moto keeps alarms and data) | cloudwatch.py |
| Firehose | delivery from a Kinesis source in the background (no API call: moto keeps the definitions); `POST /_dp/firehose/flush` | firehose.py (runtime/local/firehose.py) |
| EventBridge Scheduler | schedules fire (universal aws-sdk targets, Lambda, Step Functions) in the background; `POST /_dp/scheduler/tick` | scheduler.py |
| Step Functions | moto's interpreter, on, with the EMR and SageMaker integrations (`.sync` included) it lacks; ended executions kept across restarts | states.py |
| SageMaker | Create/Describe/List/StopTrainingJob; Create/Update/Delete/Describe/ListEndpoint(s); sagemaker-runtime's InvokeEndpoint | sagemaker.py (the API), sagemaker_training.py (script mode), sagemaker_serving.py (the serving code) |
"""

from __future__ import annotations

from pathlib import Path

from dataplatform.runtime.local.services.base import Server, Service


def services(endpoint: str, home: Path) -> list[Service]:
    """The services of a server at `endpoint`, keeping their records under `home`."""
    from dataplatform.runtime.local.services import cloudwatch, events
    from dataplatform.runtime.local.services.athena import Athena
    from dataplatform.runtime.local.services.emr import Emr
    from dataplatform.runtime.local.services.firehose import Firehose
    from dataplatform.runtime.local.services.glue import Glue
    from dataplatform.runtime.local.services.lambda_ import Lambda
    from dataplatform.runtime.local.services.sagemaker import SageMaker
    from dataplatform.runtime.local.services.scheduler import Scheduler
    from dataplatform.runtime.local.services.spark import LocalSpark

    server = Server(endpoint=endpoint, home=home)
    lambdas = Lambda(server)
    events.install(lambdas)
    cloudwatch.install()
    spark = LocalSpark(server)
    return [
        Athena(server),
        lambdas,
        Firehose(server, lambdas),
        Glue(server, spark),
        Emr(server, spark),
        SageMaker(server),
        Scheduler(server),
        cloudwatch.CloudWatch(server),
    ]
