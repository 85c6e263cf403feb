"""Glue entry point of the curate-<dataset> job. Thin: the I/O shell lives in
dataplatform/jobs/curate_run.py and the transform in dataplatform/transforms/curate.py
(shipped with --extra-py-files). Runs unchanged on Glue 5.0, as an EMR step
(spark-submit glue_jobs/curate.py --dataset ...) and locally."""

import sys

from dataplatform.jobs.curate_run import main

if __name__ == "__main__":
    sys.exit(main())
