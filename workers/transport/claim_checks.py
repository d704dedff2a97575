"""The channel's side of the claim check: one ClaimChecks per channel, made on first use, bodies fetched back on
receive and deleted from S3 after the ack (workers/claim_check.py does the work)."""

from __future__ import annotations

from workers import claim_check


class ChannelClaimChecks:
    """Lazily built from the transport option, so a worker that never meets a large body never builds a client."""

    def __init__(self, option: dict | None):
        self._option = option
        self._checks: claim_check.ClaimChecks | None = None

    def __call__(self) -> claim_check.ClaimChecks:
        if self._checks is None:
            self._checks = claim_check.ClaimChecks(claim_check.ClaimCheckOptions.from_option(self._option))
        return self._checks

    def received(self, payload: dict, queue: str) -> dict:
        """Put a claim-checked body back in `payload` before Celery decodes it."""
        if claim_check.HEADER in (payload.get("headers") or {}):
            self().check_out(payload, queue)
        return payload

    def acked(self, headers: dict | None) -> None:
        if claim_check.HEADER in (headers or {}):
            self().acked(headers)  # the S3 delete runs on a thread of its own

    def close(self) -> None:
        if self._checks is not None:
            self._checks.close()
