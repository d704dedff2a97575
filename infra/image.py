"""The one container image of api, workers and beat: built from the repository's Dockerfile at deploy time."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode
from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parent.parent

# Never staged into cdk.out nor sent to `docker build`, whatever .dockerignore says (.dockerignore is
# read as well and keeps the build context to what the image needs).
ASSET_EXCLUDE = (
    ".git",
    ".venv",
    ".tools",
    "node_modules",
    "cdk.out",
    ".serverless",
    "var",
    "**/__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
)


def app_image(scope: Construct) -> ecr_assets.DockerImageAsset:
    """`cdk synth` only stages the build context (no Docker); `cdk deploy` builds and pushes it to ECR."""
    return ecr_assets.DockerImageAsset(
        scope,
        "AppImage",
        directory=str(REPO_ROOT),
        file="Dockerfile",
        exclude=list(ASSET_EXCLUDE),
        ignore_mode=IgnoreMode.DOCKER,
        # The task definitions run X86_64: build for it even on an arm64 laptop.
        platform=ecr_assets.Platform.LINUX_AMD64,
    )
