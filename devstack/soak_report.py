"""The soak's verdict: which tasks were lost or took effect twice, and its last line (one shape for every reader)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

FIELDS = (
    "tasks", "kills", "pauses", "faults", "hops", "expired", "dlq", "executions", "lost", "duplicate_effects",
)  # fmt: skip
LAST_LINE = re.compile("^soak: " + " ".join(rf"{name}=(?P<{name}>\d+)" for name in FIELDS) + "$")
HOP_MARK = "eta hop: "  # workers/eta_hop.py logs one per message sent back with DelaySeconds
EXPIRED_MARK = "task expired: "  # workers/discards.py logs one per expired message deleted unrun
# workers/idempotency.py: a run whose claim was taken over (a pause past the lease) was refused its commit, or
# its release (the compare-and-set found another token).
FENCED_MARKS = (": lease lost: ", ": not released: ")


def last_line(counts: Mapping[str, int]) -> str:
    return "soak: " + " ".join(f"{name}={counts[name]}" for name in FIELDS)


def parse_last_line(line: str) -> dict[str, int] | None:
    match = LAST_LINE.match(line.strip())
    return {name: int(value) for name, value in match.groupdict().items()} if match else None


def count_log_lines(paths: Iterable[Path], *marks: str) -> int:
    """Log lines that contain any of `marks`, over every worker log."""
    total = 0
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as log:
            total += sum(1 for line in log if any(mark in line for mark in marks))
    return total


def verdict(
    expected: Mapping[str, int], effects: Mapping[str, int], *, in_dlq: set[str], recorded: set[str]
) -> tuple[int, int]:
    """(lost, duplicate_effects) over every published task id.

    `expected` is each task's number of effects (1 to run, 0 already expired). A task is lost when it has fewer
    effects than expected and nothing accounts for it: not in a DLQ (an operator sees it there) and, for an
    expired one, not recorded as discarded (`recorded`). Every effect beyond the expected is a duplicate (an
    expired task that ran counts as one).
    """
    lost = duplicates = 0
    for task_id, want in expected.items():
        got = effects.get(task_id, 0)
        duplicates += max(0, got - want)
        if got < want and task_id not in in_dlq:
            lost += 1
        elif want == 0 and got == 0 and task_id not in recorded and task_id not in in_dlq:
            lost += 1  # vanished without a record: the silent discard issue G case 2 is about
    return lost, duplicates
