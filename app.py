#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth -c env=dev|prod [-c destroy_data=true]`."""
from aws_cdk import App

from dataplatform.spec import load_spec
from stacks.platform import build_platform

app = App()
build_platform(app, load_spec("spec"))
app.synth()
