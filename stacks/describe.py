"""Synthesize the platform for one environment and describe it: the stacks, their
resources by type, and the physical names a user will meet (what `make demo` shows
until the embedded local platform runs the data path).

Usage: python -m stacks.describe [--env dev|prod] [--outdir cdk.out]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import time

from aws_cdk import App
from rich.console import Console
from rich.table import Table

from dataplatform.spec import SpecError, load_spec
from stacks.platform import REPO_ROOT, build_platform, cdk_json_context


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="dev")
    parser.add_argument("--outdir", default=str(REPO_ROOT / "cdk.out"))
    args = parser.parse_args(argv)
    console = Console()

    try:
        platform = load_spec(REPO_ROOT / "spec")
        started = time.perf_counter()
        with console.status(f"Synthesizing the {args.env} platform (cdk-nag runs inside)..."):
            app = App(outdir=args.outdir, context={**cdk_json_context(), "env": args.env})
            stacks = build_platform(app, platform)
            assembly = app.synth()
        elapsed = time.perf_counter() - started
    except SpecError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1

    names = stacks.names
    if "${Token[" in names.account:  # environment-agnostic: the account is known at deploy
        names = dataclasses.replace(names, account="<account>")
    overview = Table(
        title=f"{platform.project} / {args.env}: {len(stacks.all)} stacks, "
        f"synthesized in {elapsed:.1f} s into {args.outdir}"
    )
    for column in ("stack", "resources", "by type", "nag errors"):
        overview.add_column(column)
    failures = 0
    for stack in stacks.all:
        artifact = assembly.get_stack_artifact(stack.artifact_id)
        types = collections.Counter(r["Type"] for r in artifact.template["Resources"].values())
        errors = [m for m in artifact.messages if m.level.name == "ERROR"]
        failures += len(errors)
        overview.add_row(
            artifact.stack_name,
            str(sum(types.values())),
            ", ".join(f"{t.split('::', 1)[1]} x{n}" for t, n in sorted(types.items())),
            str(len(errors)),
        )
    console.print(overview)

    physical = Table(
        title="Physical names (from dataplatform.naming; the local platform uses the same)"
    )
    physical.add_column("what")
    physical.add_column("name")
    for zone in ("raw", "curated", "features", "models", "athena-results", "artifacts"):
        physical.add_row(f"bucket: {zone}", names.bucket(zone))
    physical.add_row("KMS key alias", names.lake_key_alias)
    for ds in platform.stream_datasets:
        physical.add_row(
            f"stream: {ds.name}", f"{names.stream(ds.name)} -> {names.delivery_stream(ds.name)}"
        )
    for ds in platform.datasets:
        physical.add_row(
            f"tables: {ds.name}",
            f"{names.raw_database}.{ds.name}, {names.curated_database}.{ds.name}",
        )
        physical.add_row(
            f"crawler / job: {ds.name}", f"{names.crawler(ds.name)} / {names.curate_job(ds.name)}"
        )
    physical.add_row("Athena workgroup", names.workgroup)
    console.print(physical)
    if failures:
        console.print(f"[red]{failures} cdk-nag error(s): see the messages above[/red]")
        return 1
    console.print("Deploy with [bold]make deploy ENV=dev[/bold] (after `npx cdk bootstrap`).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
