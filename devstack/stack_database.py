"""`make run`'s database step in one Django start-up: migrate, seed, and a warning about stranded Jobs.

`python -m devstack.stack_database`: the emulator starts empty on every `make run` (moto keeps queues in
memory) while the database keeps its Jobs, so Jobs that were waiting in SQS when the last stack stopped will
never run; they are counted and named here, not silently left behind.
"""

from __future__ import annotations

import sys

# Their message was in SQS, which the fresh emulator is not.
STRANDED_STATES = ("queued", "delayed", "running", "retrying")


def stranded_jobs() -> dict[str, int]:
    """{state: count} of Jobs whose message only the previous emulator held."""
    from django.db.models import Count

    from api.jobs.models import Job

    rows = Job.objects.filter(state__in=STRANDED_STATES).values("state").annotate(n=Count("id")).order_by("state")
    return {row["state"]: row["n"] for row in rows}


def stranded_warning(counts: dict[str, int]) -> str | None:
    if not counts:
        return None
    listed = ", ".join(f"{n} {state}" for state, n in counts.items())
    return (
        f"warning: the database holds Jobs from a previous stack ({listed}) whose messages were in the emulator,"
        " which starts empty (moto keeps queues in memory): they will not run; post them again"
    )


def main() -> int:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    call_command("seed_subscribers", count=25)
    if warning := stranded_warning(stranded_jobs()):
        print(warning, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
