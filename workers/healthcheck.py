"""`python -m workers.healthcheck worker|beat`: exit 0 if the liveness file is fresh, 1 if stale or missing.

The ECS container health check of the worker and beat services (`celery inspect ping` needs remote
control, which SQS cannot carry)."""

from __future__ import annotations

import sys

from workers.delete_health import failure_reason
from workers.dependency_gate import dependency_down_message
from workers.health import liveness_age, liveness_path, max_age


def check(kind: str) -> tuple[bool, str]:
    if kind == "worker" and (deletes := failure_reason()):
        return False, f"worker unhealthy: {deletes}"
    age, limit = liveness_age(kind), max_age(kind)
    if age is None:
        return False, f"{kind} unhealthy: no liveness file at {liveness_path(kind)}"
    if age > limit:
        return False, f"{kind} unhealthy: last alive {age:.0f} s ago (max {limit} s)"
    if kind == "worker" and (down := dependency_down_message()):
        return True, f"{kind} {down}; last alive {age:.0f} s ago (max {limit} s)"
    return True, f"{kind} healthy: last alive {age:.0f} s ago (max {limit} s)"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("worker", "beat"):
        print("usage: python -m workers.healthcheck worker|beat", file=sys.stderr)
        return 2
    ok, message = check(argv[0])
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
