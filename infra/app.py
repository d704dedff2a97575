#!/usr/bin/env python
"""The CDK app: `make synth` (or `npx cdk synth` in infra/) runs it; `-c stage=<name>` picks the stage."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # infra/ and workers/ are imported from the repository root

import aws_cdk as cdk  # noqa: E402

from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology  # noqa: E402
from infra.config import InfraConfig  # noqa: E402
from infra.naming import stack_name  # noqa: E402
from infra.stack import CelerySqsStack  # noqa: E402


def build_app(app: cdk.App) -> CelerySqsStack:
    config = InfraConfig.from_context(app.node.try_get_context)
    # The image's queues.yml with its deployed numbers: neither $QUEUE_TOPOLOGY nor a profile (`local`
    # shortens timeouts) from this shell may change what is deployed.
    topology = load_topology(DEFAULT_TOPOLOGY_PATH, profile="")
    return CelerySqsStack(
        app,
        stack_name(config.stage),
        config=config,
        topology=topology,
        description=f"Celery on SQS ({config.stage}): queues, ECS services (api, workers, beat), alarms",
        analytics_reporting=False,
    )


if __name__ == "__main__":
    cdk_app = cdk.App()
    build_app(cdk_app)
    cdk_app.synth()
