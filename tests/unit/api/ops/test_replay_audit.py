"""Every replay from the queues page is audited: who, when, the filters and what moved, in a row and a log line."""

from __future__ import annotations

import dataclasses
import logging

from django.db import DatabaseError

from api.ops.models import ReplayAudit
from tests.unit.api.ops.test_views import _csrf_token, _post_replay


def test_a_replay_leaves_a_row_and_a_log_line_with_who_when_filters_and_what_moved(staff_client, ops_world, caplog):
    # GIVEN two jobs.fail messages and one jobs.echo in the default DLQ
    ops_world.sqs.dead_letter_many("jobs.fail", 2)
    ops_world.sqs.dead_letter("jobs.echo")
    token = _csrf_token(staff_client)

    # WHEN the operator previews, then replays jobs.fail only
    with caplog.at_level(logging.INFO, logger="api.ops.audit"):
        _post_replay(staff_client, "default", {"dry_run": True}, token)
        filters = {"dry_run": False, "task_names": ["jobs.fail"], "max_messages": 3}
        response = _post_replay(staff_client, "default", filters, token)
    assert response.status_code == 200

    # THEN each is a row: the replay names the operator, the filters as posted and the two that moved
    replay, preview = ReplayAudit.objects.all()  # newest first
    assert (preview.username, preview.queue, preview.dry_run, preview.moved) == ("operator", "default", True, 0)
    assert (replay.username, replay.dry_run, replay.status, replay.moved) == ("operator", False, 200, 2)
    assert replay.user.username == "operator"
    assert replay.filters == filters
    assert replay.report["by_task"] == {"jobs.fail": 2}
    assert replay.at <= replay.finished_at
    # AND the log has one line for each, with the same fields
    records = [r for r in caplog.records if r.name == "api.ops.audit"]
    assert [r.getMessage() for r in records] == [
        "dlq preview of default by operator: status 200, moved 0",
        "dlq replay of default by operator: status 200, moved 2",
    ]
    assert records[1].filters == filters and records[1].audit_id == replay.pk


def test_a_refused_replay_is_audited_with_its_error(staff_client, ops_world):
    # GIVEN a message in the DLQ WHEN a replay with a bad field is posted
    ops_world.sqs.dead_letter("jobs.fail")
    response = _post_replay(staff_client, "default", {"dry_run": False, "everything": True}, _csrf_token(staff_client))
    # THEN it is refused, and the audit row says so
    assert response.status_code == 400
    [audit] = ReplayAudit.objects.all()
    assert (audit.status, audit.moved, audit.dry_run) == (400, 0, False)
    assert "everything" in audit.report["error"]


def test_no_audit_row_no_replay(staff_client, ops_world, monkeypatch):
    # GIVEN a message in the DLQ and an audit table that cannot be written
    ops_world.sqs.dead_letter("jobs.fail")
    token = _csrf_token(staff_client)

    def refuse(*args, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(ReplayAudit.objects, "create", refuse)

    # WHEN a replay is posted
    response = _post_replay(staff_client, "default", {"dry_run": False}, token)

    # THEN it is refused and nothing moved
    assert response.status_code == 503
    assert "nothing replayed" in response.json()["error"]
    assert ops_world.sqs.dlq_counts() == (1, 0)
    assert ops_world.sqs.source_counts() == (0, 0)


def test_a_replay_of_a_queue_that_does_not_exist_names_it_and_is_audited(staff_client, ops_world, settings):
    # GIVEN the api told a queue prefix under which no queue exists (a wrong stage)
    settings.SQS_BROKER = dataclasses.replace(settings.SQS_BROKER, queue_prefix="nope-")
    # WHEN a replay is posted
    response = _post_replay(staff_client, "default", {"dry_run": True}, _csrf_token(staff_client))
    # THEN the answer names the queue it looked for, and the audit row records the failure
    assert response.status_code == 502
    assert "queue 'nope-" in response.json()["error"] and "does not exist" in response.json()["error"]
    [audit] = ReplayAudit.objects.all()
    assert (audit.status, audit.moved) == (502, 0)
