"""The embedded platform's Athena: Athena (Trino) SQL over the Glue catalog and S3 of the
local platform (a moto server), run by DuckDB.

moto's Athena answers every query with zero rows (see docs/moto.md), so the local
platform runs queries itself, the way Athena does:

1. parse the SQL with sqlglot (Athena dialect, Trino as a fall-back);
2. find every table it reads (`db.table`, `awsdatacatalog.db.table`, or a bare `table`
   in `default_database`; CTE names are not tables);
3. read each table's definition from Glue (`get_table`: location, SerDe / format,
   columns, partition keys) and its partitions (`get_partitions`, or -- for a table with
   `projection.enabled` and no catalog partitions -- the `k=v/` folders below its
   location, as partition projection would);
4. prune partitions with the simple predicates of the WHERE clauses on partition keys
   (`=`, `<>`, `IN`, `<`, `<=`, `>`, `>=`, `BETWEEN`, ANDed together);
5. refuse the query when the bytes it would scan exceed the workgroup's cutoff;
6. expose each table to DuckDB as a view `"<database>"."<table>"` (one DuckDB schema per
   Glue database) over the files of the selected partitions, with the partition
   columns as strings: Parquet through a `pyarrow.dataset` over `s3_filesystem`
   (DuckDB's httpfs is not available offline), JSON lines (gzip when the key ends in
   `.gz`) and CSV read with pyarrow, every catalog column as a string (as the raw
   tables declare them);
7. transpile to DuckDB SQL, run it, and write the result as CSV to
   `s3://<athena-results>/results/<query_id>.csv` (plus `<query_id>.csv.metadata`, JSON).

`bytes_scanned` is the total size of the S3 objects of the partitions selected after
pruning (the compressed size for gzip JSON). Athena counts only the Parquet columns and
row groups it actually reads, so for Parquet this is an upper bound of Athena's figure;
for JSON and CSV it is what Athena counts.

The package, along its seams:

- `sql`: the SQL analysis, without I/O: parsing (1), the statements and functions refused,
  the tables read (2), the partition predicates and which partitions they keep (4), and
  the DuckDB SQL (7);
- `catalog`: the tables' definitions and partitions from Glue (3), and the S3 objects of
  the partitions kept (4);
- `engine`: DuckDB: the bytes-scanned cutoff (5), the tables registered as Arrow data (6),
  the query run and its result written (7); `run_query` is the entry point.
"""

from dataplatform.runtime.local.athena.engine import Grants, QueryResult, run_query
from dataplatform.runtime.local.athena.sql import DEFAULT_CATALOG, QueryError

__all__ = ["DEFAULT_CATALOG", "Grants", "QueryError", "QueryResult", "run_query"]
