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

Iceberg tables (Glue Parameters `table_type` ICEBERG, any case, and `metadata_location`, as
Iceberg's GlueCatalog and Glue's OpenTableFormatInput register them; no Glue partition
keys) are read with pyiceberg over `s3_filesystem`, as Athena engine v3 reads them: the
data files the scan of the snapshot plans are the files read and their sizes the bytes
scanned (so the cutoff applies), the `=`, `<>`, `IN`, comparison and `BETWEEN` predicates
on identity-partitioned columns prune that plan, and schema evolution resolves by field id
(a column added later is NULL in older rows, a renamed one reads under its new name).
`FOR VERSION AS OF <snapshot id or branch/tag name>` and `FOR TIMESTAMP AS OF <timestamp>`
(without zone: UTC; any constant expression, evaluated by DuckDB) read an older snapshot,
with that snapshot's schema (pyiceberg's rule), each version of a table its own DuckDB view
`"<db>"."<table> FOR VERSION AS OF <pointer>"`; a missing snapshot, a time before the first
one, and versions of a non-Iceberg table fail with Trino's messages. The metadata tables
`"<table>$snapshots"`, `$history`, `$files`, `$partitions` and `$refs` answer with Trino's
columns, less those that would show column values (bounds, metrics). Lake Formation's
hidden columns stay hidden: under their name in an older snapshot too, and in the metadata
tables' `partition` rows.

The package, along its seams:

- `sql`: the SQL analysis, without I/O: parsing (1), the statements and functions refused,
  the tables read and the version each reference asks for (2), the partition predicates
  and which partitions they keep (4), and the DuckDB SQL (7);
- `catalog`: the tables' definitions and partitions from Glue (3), and the S3 objects of
  the partitions kept (4);
- `iceberg`: Iceberg tables through pyiceberg: the snapshot a reference asks for, the
  pruned scan plan (4), its rows (6), and the metadata tables;
- `engine`: DuckDB: the bytes-scanned cutoff (5), the tables registered as Arrow data (6),
  the query run and its result written (7); `run_query` is the entry point.
"""

from dataplatform.runtime.local.athena.engine import Grants, QueryResult, run_query
from dataplatform.runtime.local.athena.sql import DEFAULT_CATALOG, QueryError

__all__ = ["DEFAULT_CATALOG", "Grants", "QueryError", "QueryResult", "run_query"]
