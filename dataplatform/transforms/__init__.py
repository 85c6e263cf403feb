"""Pure data transforms (no I/O): they take and return DataFrames and plain dicts, so the
Glue/EMR jobs and the local platform share them and tests run them on a local Spark."""
