"""manage.py dlq: a DLQ it could not read is an error (exit 1) that names the queue, never a traceback or exit 0."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tests.unit.api.ops.conftest import ops_world  # noqa: F401 (a fixture)
from tests.unit.lambdas.conftest import sqs_world  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def test_summary_fails_naming_the_dlq_it_could_not_read_after_showing_the_others(ops_world):  # noqa: F811
    # GIVEN one message in the default DLQ, and the low_priority DLQ missing
    ops_world.sqs.dead_letter("jobs.fail")
    ops_world.sqs.client.delete_queue(QueueUrl=ops_world.sqs.dlq_urls["low_priority"])
    out = io.StringIO()

    # WHEN the summary runs THEN what it read is shown, and it fails naming the DLQ it could not read
    missing = r"could not read 1 of 3 DLQs: low_priority \(.*t-low-priority-dlq. does not exist"
    with pytest.raises(CommandError, match=missing):
        call_command("dlq", "summary", stdout=out)
    assert "jobs.fail" in out.getvalue()


def test_replay_fails_with_the_reason_when_the_dlq_cannot_be_read(ops_world):  # noqa: F811
    # GIVEN the default DLQ missing
    ops_world.sqs.client.delete_queue(QueueUrl=ops_world.sqs.dlq_urls["default"])

    # WHEN a dry run is asked for THEN it fails with the reason, not a traceback
    with pytest.raises(CommandError, match="could not read the default DLQ: .*t-default-dlq. does not exist"):
        call_command("dlq", "replay", "--queue", "default", stdout=io.StringIO())
