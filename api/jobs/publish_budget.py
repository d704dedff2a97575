"""The time budget of one publish: botocore's timeouts and retries sized to fit it, checked at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from core.env import EnvError

# A publish on a new connection makes two SQS calls: Celery declares the queue first (kombu's
# queue_declare is a GetQueueAttributes), then SendMessage. Later publishes on the connection make one.
CALLS_PER_PUBLISH = 2
BOTOCORE_ATTEMPTS = 1  # no botocore retry: the relay retries, with backoff, instead
CELERY_PUBLISH_RETRIES = 0  # send_task(retry=False) for the same reason
CONNECT_SHARE = 0.4  # of each call's time: connecting (a black-holed endpoint accepts, then never answers)
MIN_BUDGET_SECONDS = 1.0
# The budget must leave the request room for its database work inside gunicorn's timeout.
SERVER_TIMEOUT_FRACTION = 1 / 3


@dataclass(frozen=True)
class PublishBudget:
    """How long a request (or one relay attempt) may wait on SQS, and the client timeouts that fit it."""

    seconds: float
    connect_timeout: float
    read_timeout: float

    def client_config(self) -> dict:
        """kombu's `client-config` transport option (a botocore Config) for the publishing connection."""
        return {
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "retries": {"total_max_attempts": BOTOCORE_ATTEMPTS},
        }

    def worst_case_seconds(self) -> float:
        """The longest a publish can take with these timeouts, before the hard bound (a joined thread)."""
        per_call = (self.connect_timeout + self.read_timeout) * BOTOCORE_ATTEMPTS
        return CALLS_PER_PUBLISH * (1 + CELERY_PUBLISH_RETRIES) * per_call


def publish_budget(seconds: float, *, server_timeout: float) -> PublishBudget:
    """The budget and its timeouts; refused (EnvError) unless it fits well inside the server's timeout."""
    limit = server_timeout * SERVER_TIMEOUT_FRACTION
    if not MIN_BUDGET_SECONDS <= seconds <= limit:
        raise EnvError(
            f"PUBLISH_BUDGET_SECONDS={seconds:g} must be between {MIN_BUDGET_SECONDS:g} and {limit:g} "
            f"(a third of API_TIMEOUT_SECONDS={server_timeout:g}, gunicorn's worker timeout)"
        )
    per_call = seconds / (CALLS_PER_PUBLISH * (1 + CELERY_PUBLISH_RETRIES) * BOTOCORE_ATTEMPTS)
    budget = PublishBudget(
        seconds=seconds,
        connect_timeout=round(per_call * CONNECT_SHARE, 3),
        read_timeout=round(per_call * (1 - CONNECT_SHARE), 3),
    )
    assert budget.worst_case_seconds() <= seconds + 1e-6, budget  # noqa: S101 (the arithmetic's own check)
    return budget
