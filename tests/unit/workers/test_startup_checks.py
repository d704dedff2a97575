"""Unit tests of workers/startup_checks.py: each broken rule is named, all of them at once."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology
from workers.celery_config import BrokerEnv, build_celery_settings
from workers.startup_checks import (
    StartupRefused,
    apply_and_check_task_limits,
    apply_worker_prefetch,
    check_queues,
    check_required_settings,
    check_unknown_settings,
    run_startup_checks,
)
from workers.transport import RECEIVE_AHEAD_OPTION


@pytest.fixture(scope="module")
def topology():
    return load_topology(DEFAULT_TOPOLOGY_PATH, profile="")


@pytest.fixture
def conf(topology) -> dict:
    broker = BrokerEnv(endpoint_url="http://127.0.0.1:9324", claim_check_bucket="claim-check")
    return copy.deepcopy(build_celery_settings(topology, broker))


def _task(**attrs) -> SimpleNamespace:
    return SimpleNamespace(**{"time_limit": None, "soft_time_limit": None, **attrs})


def test_correct_config_has_no_problems(conf, topology):
    # GIVEN the settings build_celery_settings makes
    # WHEN every check runs
    problems = check_required_settings(conf) + check_queues(conf, topology)
    # THEN none fails
    assert problems == []


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("task_acks_late", False, ["task_acks_late is False", "must be True"]),
        ("task_acks_on_failure", True, ["task_acks_on_failure is True", "must be False"]),
        ("task_reject_on_worker_lost", None, ["task_reject_on_worker_lost is None", "must be True"]),
        ("worker_prefetch_multiplier", 4, ["worker_prefetch_multiplier is 4", "must be 1"]),
        ("accept_content", ["json", "pickle"], ["accept_content is ['json', 'pickle']", "must be ['json']"]),
        ("task_serializer", "pickle", ["task_serializer is 'pickle'", "must be 'json'"]),
    ],
)
def test_required_setting_broken(conf, key, value, expected):
    # GIVEN a correct config with one required setting changed
    conf[key] = value
    # WHEN checked
    problems = check_required_settings(conf)
    # THEN exactly one problem, naming the setting and both values
    assert len(problems) == 1, problems
    for part in expected:
        assert part in problems[0]


def test_required_setting_missing(conf):
    # GIVEN a config without task_acks_late at all
    del conf["task_acks_late"]
    # WHEN checked THEN it is reported as None
    assert check_required_settings(conf) == [
        "task_acks_late is None, must be True: a message is deleted only after its task ends"
    ]


def test_wait_time_not_20(conf):
    # GIVEN short polling
    conf["broker_transport_options"]["wait_time_seconds"] = 10
    # WHEN checked THEN the option and both values are named
    [problem] = check_required_settings(conf)
    assert "wait_time_seconds is 10" in problem
    assert "must be 20" in problem


def test_wait_time_is_checked_against_worker_long_poll_seconds(conf, monkeypatch):
    # GIVEN WORKER_LONG_POLL_SECONDS=2 (a test's worker)
    monkeypatch.setenv("WORKER_LONG_POLL_SECONDS", "2")
    # WHEN the options carry 2 THEN nothing is refused; WHEN they carry 20 THEN the variable is named
    conf["broker_transport_options"]["wait_time_seconds"] = 2
    assert check_required_settings(conf) == []
    conf["broker_transport_options"]["wait_time_seconds"] = 20
    [problem] = check_required_settings(conf)
    assert "wait_time_seconds is 20" in problem and "must be 2 (WORKER_LONG_POLL_SECONDS" in problem


@pytest.mark.parametrize("soft", [0, 0.0, None, 110, 115, 120])
def test_soft_shutdown_outside_window(conf, soft):
    # GIVEN a soft shutdown of none or too close to the ECS stopTimeout
    conf["worker_soft_shutdown_timeout"] = soft
    # WHEN checked
    [problem] = check_required_settings(conf)
    # THEN the setting, its value and the stopTimeout are named
    assert "worker_soft_shutdown_timeout" in problem
    assert f"is {soft or 0} s" in problem
    assert "120 s" in problem


def test_soft_shutdown_just_inside_window(conf):
    # GIVEN 109 s, below 120 - 10
    conf["worker_soft_shutdown_timeout"] = 109
    # WHEN checked THEN it passes
    assert check_required_settings(conf) == []


def test_queue_without_url(conf, topology):
    # GIVEN a predefined_queues map missing one queue
    del conf["broker_transport_options"]["predefined_queues"]["low_priority"]
    # WHEN checked THEN that queue is named
    assert check_queues(conf, topology) == [
        "queue 'low_priority' has no URL in broker_transport_options.predefined_queues"
    ]


def test_a_claim_check_queue_without_a_bucket_is_refused(conf, topology):
    # GIVEN queues.yml's `default` with a claim check, and no CLAIM_CHECK_BUCKET
    conf["broker_transport_options"]["claim_check"]["bucket"] = None
    # WHEN checked THEN the queue and the variable are named
    [problem] = check_queues(conf, topology)
    assert "['default'] have claim_check_max_bytes but no bucket: set CLAIM_CHECK_BUCKET" in problem


def test_check_unknown_settings():
    # GIVEN a misspelt CELERY_ setting, a correct one and non-Celery names
    names = ["CELERY_TASK_TIME_LIMT", "CELERY_TASK_ACKS_LATE", "DEBUG", "SQS_ENDPOINT_URL", "celery_lower"]
    # WHEN checked
    problems = check_unknown_settings(names)
    # THEN only the misspelt one is reported, by its Django name
    assert len(problems) == 1
    assert "CELERY_TASK_TIME_LIMT" in problems[0]


def test_check_unknown_settings_accepts_every_built_setting(conf):
    # GIVEN every name build_celery_settings produces, as Django settings
    names = [f"CELERY_{key.upper()}" for key in conf]
    # WHEN checked THEN none is unknown
    assert check_unknown_settings(names) == []


def test_task_without_limits_gets_its_queues(topology):
    # GIVEN tasks with no limits, routed to default and low_priority
    echo, send = _task(), _task()
    # WHEN the limits are applied
    problems = apply_and_check_task_limits({"jobs.echo": echo, "newsletter.send_one": send}, topology)
    # THEN they get their queue's limits
    assert problems == []
    assert (echo.time_limit, echo.soft_time_limit) == (300, 240)
    assert (send.time_limit, send.soft_time_limit) == (900, 840)


def test_task_with_tighter_limits_keeps_them(topology):
    # GIVEN a task with limits below its queue's
    task = _task(time_limit=100, soft_time_limit=80)
    # WHEN the limits are applied THEN they are kept
    assert apply_and_check_task_limits({"jobs.echo": task}, topology) == []
    assert (task.time_limit, task.soft_time_limit) == (100, 80)


def test_task_without_limit_attributes_at_all(topology):
    # GIVEN an object with no limit attributes
    task = SimpleNamespace()
    # WHEN the limits are applied THEN they are set
    assert apply_and_check_task_limits({"priority.ping": task}, topology) == []
    assert (task.time_limit, task.soft_time_limit) == (60, 45)


def test_task_with_looser_time_limit_refused(topology):
    # GIVEN a default-queue task with a 400 s hard limit (the queue's is 300 s)
    task = _task(time_limit=400)
    # WHEN checked
    [problem] = apply_and_check_task_limits({"jobs.slow": task}, topology)
    # THEN the task, its queue and both numbers are named
    assert "'jobs.slow'" in problem
    assert "'default'" in problem
    assert "time_limit 400 s" in problem
    assert "time_limit of queue 'default' (300 s)" in problem


def test_task_with_looser_soft_limit_refused(topology):
    # GIVEN a high-priority task with a soft limit of 50 s (the queue's is 45 s)
    task = _task(soft_time_limit=50)
    # WHEN checked
    [problem] = apply_and_check_task_limits({"priority.x": task}, topology)
    # THEN the soft limit is named with both numbers
    assert "soft_time_limit 50 s" in problem
    assert "soft_time_limit of queue 'high_priority' (45 s)" in problem
    assert "'high_priority'" in problem


def test_retry_backoff_max_over_the_retention_bound_refused(topology):
    # GIVEN a task routed to the default queue (4 days' retention) that may back off longer than 4 days less 900 s
    too_long = topology.queue("default").retention_seconds - 900 + 1
    task = _task(retry_backoff_max=too_long)
    # WHEN checked
    [problem] = apply_and_check_task_limits({"jobs.x": task}, topology)
    # THEN the task and both numbers are named
    assert "'jobs.x'" in problem
    assert str(too_long) in problem
    assert f"({too_long - 1} s: its retention less 900 s)" in problem


def test_retry_backoff_max_over_900_accepted(topology):
    # GIVEN a task that may back off an hour: its retries hop through SQS
    task = _task(retry_backoff_max=3600)
    # WHEN checked THEN nothing is refused
    assert apply_and_check_task_limits({"jobs.x": task}, topology) == []


def test_celery_builtin_tasks_are_skipped(topology):
    # GIVEN a Celery built-in task with no limits
    task = _task()
    # WHEN checked THEN it is left alone
    assert apply_and_check_task_limits({"celery.chord_unlock": task}, topology) == []
    assert task.time_limit is None


def test_run_startup_checks_lists_every_problem(conf, topology):
    # GIVEN an app whose conf breaks two rules and has a task with a loose limit
    conf["task_acks_late"] = False
    conf["worker_prefetch_multiplier"] = 4
    app = SimpleNamespace(conf=conf, tasks={"jobs.slow": _task(time_limit=400)})
    # WHEN the checks run with a misspelt setting name
    with pytest.raises(StartupRefused) as excinfo:
        run_startup_checks(app, topology, ["CELERY_TASK_TIME_LIMT"])
    refused = excinfo.value
    # THEN it is a SystemExit with a non-zero code listing all four problems
    assert isinstance(refused, SystemExit)
    assert refused.code not in (0, None)
    assert len(refused.problems) == 4
    text = str(refused.code)
    for part in ("CELERY_TASK_TIME_LIMT", "task_acks_late", "worker_prefetch_multiplier", "'jobs.slow'"):
        assert part in text


def test_run_startup_checks_passes_on_good_config(conf, topology):
    # GIVEN a correct conf and a task without limits
    task = _task()
    app = SimpleNamespace(conf=conf, tasks={"jobs.echo": task})
    # WHEN the checks run THEN nothing is raised and the limits are applied
    run_startup_checks(app, topology, ["CELERY_TASK_ACKS_LATE"])
    assert task.time_limit == 300


def test_real_app_conf_passes(settings):
    # GIVEN the real Celery app configured from the test settings
    from workers.celery_app import app

    # WHEN the settings checks run on its conf
    problems = check_required_settings(app.conf) + check_queues(app.conf, settings.QUEUE_TOPOLOGY)
    # THEN there are none
    assert problems == []


def test_real_django_settings_have_no_unknown_celery_names(settings):
    # GIVEN the test Django settings
    # WHEN their names are checked THEN no CELERY_* name is unknown to Celery
    assert check_unknown_settings(dir(settings._wrapped)) == []


def test_tighter_hard_limit_never_gets_a_soft_limit_above_it(topology):
    # GIVEN a default-queue task with time_limit=100 and no soft limit (the queue's soft limit is 240 s)
    task = _task(time_limit=100)
    # WHEN the limits are applied
    problems = apply_and_check_task_limits({"jobs.quick": task}, topology)
    # THEN either it is refused, or its soft limit stays below its own hard limit
    assert problems or task.soft_time_limit < task.time_limit


# --- prefetch per worker group -------------------------------------------------------------------------


def _starting_worker(conf: dict, consumed: list[str], cli_multiplier: int | None = None) -> SimpleNamespace:
    """What apply_worker_prefetch reads of a WorkController at worker_init."""
    queues = SimpleNamespace(consume_from={key: object() for key in consumed})
    app = SimpleNamespace(
        conf=SimpleNamespace(**{**conf, "broker_transport_options": dict(conf.get("broker_transport_options") or {})}),
        amqp=SimpleNamespace(queues=queues),
    )
    multiplier = conf["worker_prefetch_multiplier"] if cli_multiplier is None else cli_multiplier
    return SimpleNamespace(app=app, prefetch_multiplier=multiplier)


@pytest.fixture
def raised_topology():
    """The real topology with the main group (high_priority, default) holding 3 messages per slot."""
    import yaml

    from core.topology import parse_topology

    raw = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    raw["worker_groups"]["main"]["prefetch_multiplier"] = 3
    return parse_topology(raw, DEFAULT_TOPOLOGY_PATH)


def test_a_worker_gets_the_prefetch_multiplier_of_its_group(conf, raised_topology):
    # GIVEN workers starting on the main group's queues, on the bulk group's, and on every queue
    on_main = _starting_worker(conf, ["default", "high_priority"])
    on_bulk = _starting_worker(conf, ["low_priority"])
    on_all = _starting_worker(conf, ["default", "high_priority", "low_priority"])
    # WHEN the prefetch is applied
    problems = [apply_worker_prefetch(w, raised_topology) for w in (on_main, on_bulk, on_all)]
    # THEN each gets its group's multiplier, the strictest when it spans groups
    assert problems == [[], [], []]
    assert (on_main.prefetch_multiplier, on_bulk.prefetch_multiplier, on_all.prefetch_multiplier) == (3, 1, 1)
    # AND only a worker holding nothing unstarted receives ahead (held messages keep the others' pools busy)
    receive_ahead = [
        w.app.conf.broker_transport_options.get(RECEIVE_AHEAD_OPTION, True) for w in (on_main, on_bulk, on_all)
    ]
    assert receive_ahead == [False, True, True]


def test_a_prefetch_multiplier_from_the_command_line_is_refused(conf, raised_topology):
    # GIVEN a worker started with --prefetch-multiplier 4
    worker = _starting_worker(conf, ["default"], cli_multiplier=4)
    # WHEN the prefetch is applied
    problems = apply_worker_prefetch(worker, raised_topology)
    # THEN refused, pointing at queues.yml
    assert problems == [
        "prefetch multiplier 4 given on the command line: set prefetch_multiplier on the worker group in "
        "queues.yml instead"
    ]
