"""Where the claim check's bucket name comes from, in every container and locally (devstack creates it on the
emulator); infra/ sets it, devstack/ creates it, workers/claim_check.py stores large task bodies in it."""

from __future__ import annotations

from core.env import env_str

BUCKET_ENV_VAR = "CLAIM_CHECK_BUCKET"


def bucket_name() -> str | None:
    """The claim-check bucket of this environment (CLAIM_CHECK_BUCKET), or None when unset."""
    return env_str(BUCKET_ENV_VAR, None)
