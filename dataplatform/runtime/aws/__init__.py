"""The `--target aws` runtime: drives a deployed environment through boto3.

- `jobs`: run a Glue crawler or a Glue job and wait for it (`run_crawler`, `run_glue_job`),
  failing with `JobFailed` that carries the run's error message and its CloudWatch log.
- `athena`: run an Athena query through awswrangler (`run_query`), failing with
  `QueryError` that carries Athena's message (with its line:column).

Every function takes its boto3 client or session; nothing here creates credentials.
"""
