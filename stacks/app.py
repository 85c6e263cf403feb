"""What app.py synthesizes: one environment's stacks (build_platform), or, when delivery is
enabled, the delivery pipeline (stacks/delivery.py), which builds every environment's
stacks in its stages. Tests call it as app.py does."""

from __future__ import annotations

from aws_cdk import App
from aws_cdk import Environment as CdkEnvironment

from dataplatform.spec import Platform
from stacks.constructs.removal import context_flag
from stacks.delivery import DeliveryStack
from stacks.platform import PlatformStacks, build_platform

DELIVERY_CONTEXT_KEY = "delivery"


def build_app(app: App, platform: Platform) -> DeliveryStack | PlatformStacks:
    if not (
        platform.delivery.enabled or context_flag(app.node.try_get_context(DELIVERY_CONTEXT_KEY))
    ):
        return build_platform(app, platform)
    platform = platform.with_delivery_enabled()
    delivery = platform.delivery
    return DeliveryStack(
        app,
        "Delivery",
        stack_name=f"{platform.project}-delivery",
        env=CdkEnvironment(account=delivery.account, region=delivery.region),
        description=f"{platform.project}: the delivery pipeline (CDK Pipelines) of every "
        f"environment ({', '.join(delivery.environments)})",
        platform=platform,
    )
