#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth -c env=dev|prod [-c destroy_data=true]` synthesizes one
environment's stacks; with spec/platform.yaml `delivery.enabled` (or `-c delivery=true`)
it synthesizes the delivery pipeline instead, whose stages hold every environment's."""

import sys

from aws_cdk import App

from dataplatform.spec import SpecError, load_spec
from stacks.app import build_app
from stacks.platform import cdk_json_context

# cdk.json's feature flags also when app.py runs on its own (`python app.py`), not only
# through the CDK CLI, which passes them itself (and whose context takes precedence).
app = App(context=cdk_json_context())
try:
    build_app(app, load_spec("spec"))
except (SpecError, ValueError) as exc:  # a bad spec or context value: say what, not a traceback
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
app.synth()
