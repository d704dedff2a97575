"""What "local" means, in one place: the emulator's endpoint, dummy credentials it accepts, the local profile.

Used by the local settings (any manage.py command in a developer's shell), `make run` and `make demo`.
Real AWS uses boto3's default credential chain; none of this applies there.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.env import env_int, env_str

DEFAULT_SQS_PORT = 9324
REPO_ROOT = Path(__file__).resolve().parent.parent
EMULATOR_DEFAULTS = {
    "QUEUE_TOPOLOGY_PROFILE": "local",
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "CLAIM_CHECK_BUCKET": "celery-sqs-local-claim-check",  # large task bodies, on the emulator's S3
}


def var_dir() -> Path:
    """Where the local stack keeps what is not committed: the secret key, the running stack's endpoints."""
    return Path(env_str("LOCAL_VAR_DIR", str(REPO_ROOT / "var")))


def sqs_port() -> int:
    return env_int("LOCAL_SQS_PORT", DEFAULT_SQS_PORT)


def sqs_endpoint() -> str:
    return f"http://127.0.0.1:{sqs_port()}"


def apply_local_defaults() -> None:
    """Fill in what the environment does not set already: first from a running `make run` (its endpoints in
    var/local-stack.json, so commands find a stack on other ports), then the defaults."""
    from devstack import stack_file

    stack_file.apply(var_dir())
    os.environ.setdefault("SQS_ENDPOINT_URL", sqs_endpoint())
    # The emulator serves the AWS/SQS CloudWatch metrics at the same endpoint (devstack/sqs_emulator.py).
    os.environ.setdefault("CLOUDWATCH_ENDPOINT_URL", os.environ["SQS_ENDPOINT_URL"])
    for key, value in EMULATOR_DEFAULTS.items():
        os.environ.setdefault(key, value)
