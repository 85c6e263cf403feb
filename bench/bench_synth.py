"""How long `cdk synth` of the whole platform takes, against a reference measured in the
same run: an app with one stack holding one plain S3 bucket (the fixed cost of the CDK).

Usage: python bench/bench_synth.py [ENV]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aws_cdk import App, Stack  # noqa: E402
from aws_cdk import aws_s3 as s3  # noqa: E402

from dataplatform.spec import load_spec  # noqa: E402
from stacks.platform import REPO_ROOT, build_platform, cdk_json_context  # noqa: E402


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main(env: str = "dev") -> None:
    with tempfile.TemporaryDirectory() as out:

        def reference():
            app = App(outdir=f"{out}/ref")
            s3.Bucket(Stack(app, "Reference"), "Bucket")
            return app.synth()

        def platform_synth():
            app = App(outdir=f"{out}/platform", context=cdk_json_context())
            build_platform(app, load_spec(REPO_ROOT / "spec"), env_name=env)
            return app.synth()

        reference()  # warm the jsii runtime so neither measurement pays for it
        spec_s, platform = timed(lambda: load_spec(REPO_ROOT / "spec"))
        ref_s, _ = timed(reference)
        synth_s, assembly = timed(platform_synth)
        resources = sum(len(s.template["Resources"]) for s in assembly.stacks)

    print(f"spec load ({len(platform.datasets)} datasets):   {spec_s * 1000:8.1f} ms")
    print(f"reference: one-bucket synth:   {ref_s:8.2f} s")
    print(
        f"platform synth ({env}, {len(assembly.stacks)} stacks, {resources} resources, cdk-nag on): "
        f"{synth_s:8.2f} s  = {synth_s / ref_s:.1f}x the reference, "
        f"{resources / synth_s:.0f} resources/s"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
