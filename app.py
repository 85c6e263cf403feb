#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth -c env=dev|prod [-c destroy_data=true]`."""

import sys

from aws_cdk import App

from dataplatform.spec import SpecError, load_spec
from stacks.platform import build_platform

app = App()
try:
    build_platform(app, load_spec("spec"))
except (SpecError, ValueError) as exc:  # a bad spec or context value: say what, not a traceback
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
app.synth()
