"""Glue entry point of the curate-<dataset> job (thin: the logic lives in
dataplatform/transforms/curate.py).

Foundation version: it parses its arguments (tolerating Glue's own `--JOB_NAME`-style
ones) and stops with a clear error, because the curate transform is delivered by the
ingestion-and-curation issue. Deploying it now lets the Glue job, its role and its
assets be built and tested.
"""
from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Curate one dataset: raw -> curated")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--raw-path", required=True)
    parser.add_argument("--curated-path", required=True)
    parser.add_argument("--quarantine-path", required=True)
    parser.add_argument("--reports-path", required=True)
    parser.add_argument("--raw-database", required=True)
    parser.add_argument("--curated-database", required=True)
    parser.add_argument("--dates", default="")
    args, _glue_extras = parser.parse_known_args(argv)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    print(f"curate {args.dataset}: the curate transform is not part of this release yet",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
