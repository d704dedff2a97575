"""`make run`'s database step names the Jobs whose messages only the previous (in-memory) emulator held."""

from __future__ import annotations

import pytest

from api.jobs.models import Job, JobState
from devstack.stack_database import stranded_jobs, stranded_warning

pytestmark = pytest.mark.django_db


def test_jobs_waiting_in_the_old_emulator_are_counted_and_others_are_not():
    # GIVEN Jobs in every state a restart finds
    for state in (JobState.QUEUED, JobState.QUEUED, JobState.RETRYING, JobState.SUCCEEDED, JobState.PENDING):
        Job.objects.create(kind="echo", queue="default", state=state)

    # WHEN the step counts them THEN only those whose message was in SQS are named
    counts = stranded_jobs()
    assert counts == {"queued": 2, "retrying": 1}  # pending ones are the relay's to publish
    assert "(2 queued, 1 retrying)" in stranded_warning(counts)


def test_no_warning_without_stranded_jobs():
    # GIVEN nothing stranded THEN nothing is said
    assert stranded_warning(stranded_jobs()) is None
