"""manage.py queues: the page's numbers as a table, JSON lines for scripts, --watch bounded by --count."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db  # expirations are counted from the workers' discard records


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("queues", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def one_failure(ops_world):
    """Two messages in the default DLQ, one waiting in the default queue; no CloudWatch datapoint yet."""
    ops_world.sqs.dead_letter_many("jobs.fail", 2)
    ops_world.sqs.publish("jobs.echo")
    return ops_world


def test_table_has_a_row_per_queue_with_the_numbers_and_their_sources(one_failure):
    # WHEN the command runs
    out = _run()

    # THEN a header and one row per topology queue; n/a where CloudWatch has no datapoint yet
    lines = out.splitlines()
    header = [
        "queue",
        "visible",
        "in flight",
        "delayed",
        "oldest age",
        "deleted/min",
        "dlq depth",
        "dlq oldest",
        "expired 15m",
        "expired",
        "error",
    ]
    assert re.split(r"\s{2,}", lines[0]) == header
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert set(rows) == set(one_failure.sqs.topology.queues)
    assert rows["default"] == ["default", "1", "0", "0", "n/a", "n/a", "2", "n/a", "0", "0"]
    # AND an empty queue's and an empty DLQ's age is "empty": SQS counts no message in them now
    assert rows["low_priority"] == ["low_priority", "0", "0", "0", "empty", "n/a", "0", "empty", "0", "0"]
    # AND it says where the numbers came from
    assert "counts: SQS GetQueueAttributes" in out
    assert "oldest age, dlq oldest: CloudWatch AWS/SQS ApproximateAgeOfOldestMessage" in out
    assert "; no datapoint yet" in out


def test_table_shows_cloudwatch_numbers_once_published(one_failure):
    # GIVEN one period of AWS/SQS metrics
    one_failure.publish_metrics()

    # WHEN the command runs
    rows = {line.split()[0]: line.split() for line in _run().splitlines()[1:4]}

    # THEN the ages are numbers ("0 s": the messages are just in), and deleted/min counts the 2 messages the
    # fixture received and deleted from the default queue to put them into its DLQ
    assert rows["default"][4:10] == ["0", "s", "2", "2", "0", "s"]


def test_json_is_the_snapshot_the_page_shows(one_failure):
    # WHEN the command runs with --json
    data = json.loads(_run("--json"))

    # THEN it is the same snapshot as the page's JSON
    default = {q["key"]: q for q in data["queues"]}["default"]
    assert (default["visible"], default["in_flight"], default["delayed"], default["dlq_depth"]) == (1, 0, 0, 2)
    assert default["oldest_age_seconds"] is None
    assert set(data["sources"]) == {"counts", "oldest_age", "throughput", "expired"}


def test_expirations_are_counted_per_queue_recent_and_in_all(ops_world):
    # GIVEN two expirations on default (one 20 minutes ago), one on low_priority, and a revoke on default
    from datetime import timedelta

    from django.utils import timezone

    from workers.models import DiscardedMessage, DiscardReason

    expired, revoked = DiscardReason.EXPIRED, DiscardReason.REVOKED
    for queue, reason in [("default", expired), ("default", expired), ("low_priority", expired), ("default", revoked)]:
        DiscardedMessage.objects.create(task_id="t", task_name="jobs.echo", queue=queue, reason=reason)
    oldest = DiscardedMessage.objects.filter(queue="default").order_by("pk").first()
    DiscardedMessage.objects.filter(pk=oldest.pk).update(at=timezone.now() - timedelta(minutes=20))

    # WHEN the command runs, as a table and as JSON
    rows = {line.split()[0]: line.split() for line in _run().splitlines()[1:4]}
    data = {q["key"]: q for q in json.loads(_run("--json"))["queues"]}

    # THEN each queue shows its expirations of the last 15 minutes and in all (revokes are not expirations)
    assert rows["default"][-2:] == ["1", "2"] and rows["low_priority"][-2:] == ["1", "1"]
    assert rows["high_priority"][-2:] == ["0", "0"]
    assert (data["default"]["expired_recent"], data["default"]["expired_total"]) == (1, 2)


def test_watch_refreshes_until_the_count(one_failure, monkeypatch):
    # GIVEN a watch that must not really sleep
    sleeps = []
    monkeypatch.setattr("api.ops.management.commands.queues.time.sleep", sleeps.append)

    # WHEN the command watches every 2 s for 3 refreshes, as JSON lines
    lines = _run("--watch", "2", "--count", "3", "--json").splitlines()

    # THEN three snapshots, two waits of 2 s between them
    assert [len(json.loads(line)["queues"]) for line in lines] == [3, 3, 3]
    assert sleeps == [2.0, 2.0]


def test_watch_stops_quietly_on_ctrl_c(one_failure, monkeypatch):
    # GIVEN Ctrl-C pressed during the first wait
    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr("api.ops.management.commands.queues.time.sleep", interrupt)

    # WHEN the command watches THEN it shows one table and ends without a traceback
    assert _run("--watch").count("low_priority") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--count", "2"], "--count goes with --watch", id="count-without-watch"),
        pytest.param(["--watch", "0"], "above 0", id="watch-zero"),
        pytest.param(["--watch", "1", "--count", "0"], "above 0", id="count-zero"),
    ],
)
def test_bad_options_are_refused_before_anything_is_read(db, args, message):
    # WHEN the command gets options that make no sense THEN it refuses them with a reason
    with pytest.raises(CommandError, match=message):
        _run(*args)


def _delete_queues(world, keys) -> None:
    for key in keys:
        world.sqs.client.delete_queue(QueueUrl=world.sqs.urls[key])


def test_exits_1_when_no_queue_could_be_read(ops_world):
    # GIVEN an endpoint where none of the topology's queues exists
    _delete_queues(ops_world, ops_world.sqs.urls)
    out = io.StringIO()

    # WHEN the command runs THEN it still shows the table (the errors in it) and fails (manage.py exits 1)
    with pytest.raises(CommandError, match=r"could not read 3 of 3 queues: default, high_priority, low_priority"):
        call_command("queues", stdout=out)
    assert "QueueDoesNotExist" in out.getvalue()


def test_exits_1_when_some_queues_could_not_be_read(ops_world):
    # GIVEN one missing queue of three
    _delete_queues(ops_world, ["low_priority"])
    out = io.StringIO()

    # WHEN the command runs THEN the two it read are shown, and it fails naming the one it could not read
    with pytest.raises(CommandError, match=r"could not read 1 of 3 queues: low_priority"):
        call_command("queues", "--json", stdout=out)
    snapshot = json.loads(out.getvalue())
    assert [q["error"] is None for q in snapshot["queues"]] == [True, True, False]


def test_watch_exits_1_when_its_last_refresh_could_not_read_a_queue(ops_world, monkeypatch):
    # GIVEN a missing queue, and a watch of two refreshes
    _delete_queues(ops_world, ["default"])
    monkeypatch.setattr("time.sleep", lambda _s: None)

    # WHEN it watches THEN both tables are shown and it fails at the end
    out = io.StringIO()
    with pytest.raises(CommandError, match="could not read 1 of 3 queues: default"):
        call_command("queues", "--watch", "1", "--count", "2", stdout=out)
    assert out.getvalue().count("low_priority") == 2


class _RefusingCloudWatch:
    def get_metric_data(self, **kwargs):
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "AccessDenied", "Message": "no cloudwatch:GetMetricData"}}
        raise ClientError(error, "GetMetricData")


def test_exits_1_when_cloudwatch_could_not_be_read(one_failure, monkeypatch):
    # GIVEN CloudWatch refusing GetMetricData (the ages and the throughput cannot be read)
    monkeypatch.setattr("api.ops.aws.cloudwatch_client", _RefusingCloudWatch)
    out = io.StringIO()

    # WHEN the command runs THEN the counts are shown, and it fails naming what it could not read
    with pytest.raises(CommandError, match=r"could not read CloudWatch's metrics .*AccessDenied"):
        call_command("queues", stdout=out)
    assert "CloudWatch failed: ClientError" in out.getvalue()
