"""Unit tests of core/topology.py: the real queues.yml loads, and every broken rule is refused."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from core.topology import (
    DEFAULT_TOPOLOGY_PATH,
    PROFILE_ENV_VAR,
    TopologyError,
    load_topology,
    parse_topology,
)

SOURCE = Path("queues.yml")


@pytest.fixture(scope="module")
def base_raw() -> dict:
    return yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())


@pytest.fixture
def raw(base_raw) -> dict:
    """A fresh, mutable copy of the real queues.yml."""
    return copy.deepcopy(base_raw)


@pytest.fixture(autouse=True)
def _no_profile_from_env(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV_VAR, raising=False)


def _refused(raw: dict, profile: str | None = None) -> str:
    with pytest.raises(TopologyError) as excinfo:
        parse_topology(raw, SOURCE, profile)
    return str(excinfo.value)


# --- the real file ---------------------------------------------------------------------------------


def test_real_queues_yml_loads_with_three_queues():
    # GIVEN the repository's queues.yml
    # WHEN it is loaded without a profile
    topology = load_topology(DEFAULT_TOPOLOGY_PATH, profile=None)
    # THEN it has the three queues, their SQS names and a 14-day DLQ retention
    assert list(topology.queues) == ["default", "high_priority", "low_priority"]
    assert topology.default_queue == "default"
    assert topology.queues["high_priority"].name == "high-priority"
    assert topology.queues["low_priority"].dlq == "low-priority-dlq"
    for spec in topology.queues.values():
        assert spec.dlq_retention_seconds == 1_209_600
        margin = topology.visibility_margin_seconds
        if spec.visibility_heartbeat_seconds:
            assert spec.visibility_timeout >= 2 * spec.visibility_heartbeat_seconds + margin
        else:
            assert spec.visibility_timeout > spec.time_limit + margin
    assert topology.retry.backoff_max_seconds <= 900
    assert topology.source == DEFAULT_TOPOLOGY_PATH


def test_local_profile_overrides_numbers_only(base_raw):
    # GIVEN the real file and its `local` profile
    # WHEN it is loaded with and without the profile
    plain = parse_topology(copy.deepcopy(base_raw), SOURCE)
    local = parse_topology(copy.deepcopy(base_raw), SOURCE, "local")
    # THEN the numbers come from the profile
    assert local.visibility_margin_seconds == 5
    assert local.retry.max_retries == 2
    assert local.retry.backoff_max_seconds == 4
    assert local.retry.jitter is plain.retry.jitter  # not in the overlay: kept from the base
    assert local.queues["default"].visibility_timeout == 20
    assert local.queues["default"].time_limit == 14
    assert local.queues["low_priority"].time_limit == 30
    # AND names, DLQs, routes and the untouched numbers stay the same
    for key, spec in plain.queues.items():
        assert local.queues[key].name == spec.name
        assert local.queues[key].dlq == spec.dlq
        assert local.queues[key].tasks == spec.tasks
        assert local.queues[key].retention_seconds == spec.retention_seconds
        assert local.queues[key].max_message_bytes == spec.max_message_bytes
    assert local.default_queue == plain.default_queue


def test_profile_comes_from_environment(monkeypatch):
    # GIVEN QUEUE_TOPOLOGY_PROFILE=local
    monkeypatch.setenv(PROFILE_ENV_VAR, "local")
    # WHEN the file is loaded without naming a profile
    topology = load_topology(DEFAULT_TOPOLOGY_PATH)
    # THEN the local profile is applied
    assert topology.queues["default"].visibility_timeout == 20


def test_parse_does_not_mutate_its_input(raw):
    # GIVEN the raw mapping
    before = copy.deepcopy(raw)
    # WHEN it is parsed with a profile
    parse_topology(raw, SOURCE, "local")
    # THEN the caller's mapping is unchanged
    assert raw == before


# --- refusals --------------------------------------------------------------------------------------


def test_visibility_timeout_not_above_time_limit_plus_margin(raw):
    # GIVEN default without a heartbeat, its visibility timeout equal to time_limit + margin (300 + 30)
    raw["queues"]["default"].pop("visibility_heartbeat_seconds", None)
    raw["queues"]["default"]["visibility_timeout"] = 330
    # WHEN parsed
    message = _refused(raw)
    # THEN the error names the queue and every number involved
    assert "queues.default" in message
    for number in ("330", "300", "30", "visibility_timeout"):
        assert number in message


def test_visibility_timeout_one_above_the_sum_is_accepted(raw):
    # GIVEN default without a heartbeat, its visibility timeout one second above time_limit + margin
    raw["queues"]["default"].pop("visibility_heartbeat_seconds", None)
    raw["queues"]["default"]["visibility_timeout"] = 331
    # WHEN parsed THEN it is accepted
    assert parse_topology(raw, SOURCE).queues["default"].visibility_timeout == 331


@pytest.mark.parametrize("soft", [300, 301])
def test_soft_limit_not_below_hard_limit(raw, soft):
    # GIVEN a soft time limit >= the hard limit (300)
    raw["queues"]["high_priority"]["soft_time_limit"] = soft
    raw["queues"]["high_priority"]["time_limit"] = 300
    raw["queues"]["high_priority"]["visibility_timeout"] = 1000
    # WHEN parsed
    message = _refused(raw)
    # THEN the error names the queue and both limits
    assert "queues.high_priority" in message
    assert f"soft_time_limit ({soft})" in message
    assert "time_limit (300)" in message


def test_unknown_queue_key(raw):
    # GIVEN a misspelt key in a queue
    raw["queues"]["default"]["visiblity_timeout"] = 400
    # WHEN parsed
    message = _refused(raw)
    # THEN the error names the queue and the key
    assert "queues.default" in message
    assert "visiblity_timeout" in message


def test_unknown_top_level_key(raw):
    # GIVEN an unknown top-level key
    raw["queus"] = {}
    # WHEN parsed THEN the key is named
    assert "queus" in _refused(raw)


def test_missing_queue_key(raw):
    # GIVEN a queue without its dlq
    del raw["queues"]["low_priority"]["dlq"]
    # WHEN parsed
    message = _refused(raw)
    # THEN the error names the queue and the missing key
    assert "queues.low_priority" in message
    assert "dlq" in message
    assert "missing" in message


def test_bool_where_int_expected(raw):
    # GIVEN `true` where a number of receives is meant
    raw["queues"]["default"]["max_receive_count"] = True
    # WHEN parsed
    message = _refused(raw)
    # THEN the field and the value are named
    assert "queues.default.max_receive_count" in message
    assert "True" in message


def test_bool_margin_refused(raw):
    # GIVEN visibility_margin_seconds: true
    raw["visibility_margin_seconds"] = True
    # WHEN parsed THEN it is refused
    assert "visibility_margin_seconds" in _refused(raw)


def test_string_where_int_expected(raw):
    # GIVEN a quoted number
    raw["queues"]["default"]["time_limit"] = "300"
    # WHEN parsed THEN the field and value are named
    message = _refused(raw)
    assert "queues.default.time_limit" in message
    assert "'300'" in message


def test_backoff_max_over_the_shortest_retention_bound(raw):
    # GIVEN a retry backoff cap one second over the shortest queue retention less the 900 s margin
    shortest = min(q["retention_seconds"] for q in raw["queues"].values())
    raw["retry"]["backoff_max_seconds"] = shortest - 900 + 1
    # WHEN parsed
    message = _refused(raw)
    # THEN the error names the setting, the value and the bound
    assert "backoff_max_seconds" in message
    assert str(shortest - 900 + 1) in message
    assert f"({shortest - 900} s)" in message


def test_backoff_max_over_900_accepted_it_travels_in_hops(raw):
    # GIVEN a backoff cap of an hour, longer than one SQS delay
    raw["retry"]["backoff_max_seconds"] = 3600
    # WHEN parsed THEN it is accepted
    assert parse_topology(raw, SOURCE).retry.backoff_max_seconds == 3600


def test_backoff_max_of_900_accepted(raw):
    # GIVEN exactly the SQS maximum
    raw["retry"]["backoff_max_seconds"] = 900
    # WHEN parsed THEN it is accepted
    assert parse_topology(raw, SOURCE).retry.backoff_max_seconds == 900


def test_duplicate_sqs_names(raw):
    # GIVEN high_priority's SQS queue named like default's
    raw["queues"]["high_priority"]["name"] = "default"
    # WHEN parsed THEN the duplicated name is reported
    message = _refused(raw)
    assert "used twice" in message
    assert "'default'" in message


def test_queue_named_like_another_queues_dlq(raw):
    # GIVEN a queue whose name is another queue's DLQ
    raw["queues"]["low_priority"]["name"] = "default-dlq"
    # WHEN parsed THEN it is refused and named
    assert "default-dlq" in _refused(raw)


def test_default_queue_unknown(raw):
    # GIVEN a default queue that is not defined
    raw["default_queue"] = "normal"
    # WHEN parsed THEN the error names it and the defined queues
    message = _refused(raw)
    assert "'normal'" in message
    assert "high_priority" in message


def test_dlq_retention_shorter_than_retention(raw):
    # GIVEN a DLQ that keeps messages 1 day while the queue keeps them 4
    raw["queues"]["default"]["dlq_retention_seconds"] = 86_400
    # WHEN parsed
    message = _refused(raw)
    # THEN the queue and both numbers are named
    assert "queues.default" in message
    assert "86400" in message
    assert "345600" in message


def test_dlq_retention_equal_to_retention_is_refused(raw):
    # GIVEN a DLQ that keeps messages exactly as long as its queue (SQS keeps a message's first enqueue
    # time when it moves to the DLQ, so one that waited almost the whole retention would expire there at once)
    raw["queues"]["default"]["dlq_retention_seconds"] = raw["queues"]["default"]["retention_seconds"]
    # WHEN parsed
    message = _refused(raw)
    # THEN the queue is named and the rule says longer
    assert "queues.default" in message
    assert "longer than" in message


def test_retention_above_sqs_maximum(raw):
    # GIVEN a retention longer than 14 days
    raw["queues"]["default"]["dlq_retention_seconds"] = 1_209_601
    # WHEN parsed THEN the range SQS accepts is quoted
    message = _refused(raw)
    assert "queues.default.dlq_retention_seconds" in message
    assert "1209601" in message
    assert "1209600" in message


@pytest.mark.parametrize("field,value", [("name", "renamed"), ("tasks", ["other.*"]), ("dlq", "x-dlq")])
def test_profile_may_not_change_names_or_routes(raw, field, value):
    # GIVEN a profile that changes a name or the routes of a queue
    raw["profiles"]["local"]["queues"]["default"][field] = value
    # WHEN parsed with that profile
    message = _refused(raw, "local")
    # THEN the profile, the queue and the field are named
    assert "profiles.local.queues.default" in message
    assert field in message


def test_profile_for_unknown_queue(raw):
    # GIVEN a profile that names a queue the file does not define
    raw["profiles"]["local"]["queues"]["bulk"] = {"time_limit": 10}
    # WHEN parsed with it THEN the queue is named
    assert "profiles.local.queues.bulk" in _refused(raw, "local")


def test_profile_unknown_top_key(raw):
    # GIVEN a profile that tries to change the default queue
    raw["profiles"]["local"]["default_queue"] = "low_priority"
    # WHEN parsed with it THEN it is refused
    message = _refused(raw, "local")
    assert "profiles.local" in message
    assert "default_queue" in message


def test_profile_numbers_are_validated_too(raw):
    # GIVEN a profile that breaks the heartbeat rule (2 * 5 + 5 = 15 > 14)
    raw["profiles"]["local"]["queues"]["default"]["visibility_timeout"] = 14
    # WHEN parsed with it THEN the merged queue is refused
    message = _refused(raw, "local")
    assert "queues.default" in message
    assert "14 s" in message and "15 s" in message


def test_unknown_profile(raw):
    # GIVEN a profile name the file does not define
    # WHEN parsed with it
    message = _refused(raw, "staging")
    # THEN the name and the defined profiles are given
    assert "'staging'" in message
    assert "local" in message


def test_top_level_not_a_mapping():
    # GIVEN a YAML list
    # WHEN parsed THEN it is refused
    assert "mapping" in _refused(["queues"])  # type: ignore[arg-type]


def test_version_must_be_1(raw):
    # GIVEN version 2
    raw["version"] = 2
    # WHEN parsed THEN the version is named
    assert "version must be 1" in _refused(raw)


def test_invalid_yaml(tmp_path):
    # GIVEN a file that is not YAML
    path = tmp_path / "queues.yml"
    path.write_text("queues: [unclosed\n  default: {")
    # WHEN loaded
    with pytest.raises(TopologyError) as excinfo:
        load_topology(path, profile=None)
    # THEN the file is named
    assert "not valid YAML" in str(excinfo.value)
    assert str(path) in str(excinfo.value)


def test_missing_file(tmp_path):
    # GIVEN a path that does not exist
    path = tmp_path / "nope.yml"
    # WHEN loaded
    with pytest.raises(TopologyError) as excinfo:
        load_topology(path, profile=None)
    # THEN the error names the file
    assert "cannot read" in str(excinfo.value)
    assert str(path) in str(excinfo.value)


def test_written_variant_loads_from_disk(tmp_path, raw):
    # GIVEN a mutated copy written to disk
    raw["queues"]["default"]["max_receive_count"] = 7
    path = tmp_path / "queues.yml"
    path.write_text(yaml.safe_dump(raw))
    # WHEN loaded from that path
    topology = load_topology(path, profile=None)
    # THEN the change is visible and the source is the file
    assert topology.queues["default"].max_receive_count == 7
    assert topology.source == path


# --- routing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task_name,queue",
    [
        ("jobs.echo", "default"),
        ("priority.anything", "high_priority"),
        ("newsletter.send_one", "low_priority"),
        ("newsletter.fan_out", "low_priority"),
        ("unrouted.task", "default"),
        ("jobsecho", "default"),  # falls back, not matched by "jobs.*"
        ("Newsletter.send_one", "default"),  # patterns are case-sensitive
    ],
)
def test_queue_for_task(raw, task_name, queue):
    # GIVEN the real routes
    topology = parse_topology(raw, SOURCE)
    # WHEN a task name is routed THEN it lands on the expected queue
    assert topology.queue_for_task(task_name).key == queue


def test_queue_for_task_falls_back_to_configured_default(raw):
    # GIVEN low_priority as the default queue
    raw["default_queue"] = "low_priority"
    topology = parse_topology(raw, SOURCE)
    # WHEN an unmatched task is routed THEN it goes to low_priority
    assert topology.queue_for_task("misc.cleanup").key == "low_priority"


def test_queue_lookup_of_unknown_key(raw):
    # GIVEN the topology
    topology = parse_topology(raw, SOURCE)
    # WHEN an unknown queue key is asked for THEN the error lists the known ones
    with pytest.raises(TopologyError, match="unknown queue 'bulk'"):
        topology.queue("bulk")


@pytest.mark.parametrize("where", ["queue-null", "retry-scalar"])
def test_malformed_profile_overlay_is_a_topology_error(raw, where):
    # GIVEN a profile whose queue overlay is null (`default:` with nothing after it), or whose retry is 5
    if where == "queue-null":
        raw["profiles"]["local"]["queues"]["default"] = None
    else:
        raw["profiles"]["local"]["retry"] = 5
    # WHEN parsed with that profile THEN a TopologyError names the profile
    assert "profiles.local" in _refused(raw, "local")


# --- worker groups -----------------------------------------------------------------------------------


def test_worker_groups_cover_every_queue_once():
    # GIVEN the real topology
    topology = load_topology(DEFAULT_TOPOLOGY_PATH, profile="")
    # WHEN its worker groups are read
    owned = [key for group in topology.worker_groups.values() for key in group.queues]
    # THEN every queue is consumed by exactly one group, with a positive backlog target
    assert sorted(owned) == sorted(topology.queues)
    assert all(group.backlog_per_task > 0 and group.min_tasks >= 1 for group in topology.worker_groups.values())


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ({"a": {"queues": ["default", "high_priority", "low_priority", "default"]}}, "is in worker groups"),
        ({"a": {"queues": ["default", "high_priority"]}}, "are in no worker group"),
        ({"a": {"queues": ["default", "high_priority", "low_priority", "nope"]}}, "unknown queue 'nope'"),
        ({"a": {"queues": ["default", "high_priority", "low_priority"], "min_tasks": 3, "max_tasks": 2}}, "min_tasks"),
    ],
)
def test_bad_worker_groups_are_refused(groups, expected):
    # GIVEN the real topology with a broken worker_groups section
    raw = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    defaults = {"concurrency": 2, "min_tasks": 1, "max_tasks": 2, "backlog_per_task": 10}
    raw["worker_groups"] = {name: {**defaults, **group} for name, group in groups.items()}
    # WHEN it is parsed THEN it is refused with a message naming the problem
    with pytest.raises(TopologyError, match=expected):
        parse_topology(raw, DEFAULT_TOPOLOGY_PATH)


def test_heartbeat_queue_needs_two_heartbeats_and_the_margin_inside_its_visibility_timeout():
    # GIVEN the real topology, default queue heartbeating every 40 s in a 90 s visibility timeout
    raw = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    raw["queues"]["default"]["visibility_heartbeat_seconds"] = 40
    # WHEN parsed THEN refused, naming the queue and the numbers (2 * 40 + 30 = 110 > 90)
    with pytest.raises(TopologyError, match=r"queues\.default: visibility_timeout \(90 s\).*= 110 s"):
        parse_topology(raw, DEFAULT_TOPOLOGY_PATH)


def test_without_heartbeat_the_visibility_timeout_must_cover_the_hard_limit():
    # GIVEN the default queue with its heartbeat turned off (visibility 90 s, hard limit 300 s)
    raw = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    raw["queues"]["default"]["visibility_heartbeat_seconds"] = 0
    # WHEN parsed THEN refused, pointing at the heartbeat as the way out
    with pytest.raises(TopologyError, match="or set visibility_heartbeat_seconds"):
        parse_topology(raw, DEFAULT_TOPOLOGY_PATH)


# --- prefetch multiplier per worker group ------------------------------------------------------------


def _groups(raw: dict, **main) -> dict:
    raw["worker_groups"]["main"].update(main)
    return raw


def test_prefetch_multiplier_defaults_to_one_and_is_read_per_group():
    # GIVEN the real topology, and a copy whose main group (both of its queues heartbeat) raises its multiplier
    real = load_topology(DEFAULT_TOPOLOGY_PATH, profile="")
    raised = parse_topology(
        _groups(yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text()), prefetch_multiplier=3), DEFAULT_TOPOLOGY_PATH
    )
    # WHEN the multiplier of a worker on some queues is asked
    # THEN the shipped groups hold nothing they have not started
    assert {g.prefetch_multiplier for g in real.worker_groups.values()} == {1}
    # AND a worker on the raised group's queues gets its multiplier
    assert raised.prefetch_multiplier_for(["default"]) == 3
    assert raised.prefetch_multiplier_for(["high_priority", "default"]) == 3
    # AND a worker on queues of two groups gets the lower one (the local stack's worker consumes every queue)
    assert raised.prefetch_multiplier_for(["default", "low_priority"]) == 1
    assert raised.prefetch_multiplier_for([]) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "expected an int from 1 to 10, got 0"),
        (11, "expected an int from 1 to 10, got 11"),
        (True, "expected an int from 1 to 10, got True"),
        ("2", "expected an int from 1 to 10, got '2'"),
    ],
)
def test_bad_prefetch_multiplier_is_refused(value, expected):
    # GIVEN the real topology with a main group multiplier that is no small positive int
    raw = _groups(yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text()), prefetch_multiplier=value)
    # WHEN parsed THEN refused, naming the group's field
    with pytest.raises(TopologyError, match=rf"worker_groups\.main\.prefetch_multiplier: {expected}"):
        parse_topology(raw, DEFAULT_TOPOLOGY_PATH)


def test_prefetch_multiplier_above_one_needs_a_heartbeat_on_every_queue_of_the_group():
    # GIVEN the default queue without a heartbeat (its visibility timeout covering its hard limit instead)
    raw = _groups(yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text()), prefetch_multiplier=2)
    raw["queues"]["default"].update(visibility_heartbeat_seconds=0, visibility_timeout=400)
    # WHEN its group holds unstarted messages THEN refused: a held message would be delivered again
    with pytest.raises(TopologyError, match=r"prefetch_multiplier = 2: queue\(s\) \['default'\] have no visibility_"):
        parse_topology(raw, DEFAULT_TOPOLOGY_PATH)
    # AND with a multiplier of 1 the same queue is fine
    raw["worker_groups"]["main"]["prefetch_multiplier"] = 1
    assert parse_topology(raw, DEFAULT_TOPOLOGY_PATH).worker_groups["main"].prefetch_multiplier == 1


def test_a_profile_may_change_a_worker_groups_numbers_but_not_its_queues():
    # GIVEN a profile raising the main group's prefetch multiplier, and one moving a queue between groups
    raw = yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text())
    raw["profiles"]["short"] = {"worker_groups": {"main": {"prefetch_multiplier": 3, "concurrency": 8}}}
    moved, ghost = copy.deepcopy(raw), copy.deepcopy(raw)
    moved["profiles"]["moved"] = {"worker_groups": {"bulk": {"queues": ["low_priority", "default"]}}}
    ghost["profiles"]["ghost"] = {"worker_groups": {"nope": {"concurrency": 1}}}
    # WHEN parsed with each
    short = parse_topology(raw, DEFAULT_TOPOLOGY_PATH, profile="short")
    # THEN the numbers change, nothing else does
    assert (short.worker_groups["main"].prefetch_multiplier, short.worker_groups["main"].concurrency) == (3, 8)
    assert short.worker_groups["main"].queues == ("high_priority", "default")
    assert parse_topology(raw, DEFAULT_TOPOLOGY_PATH).worker_groups["main"].prefetch_multiplier == 1
    # AND a profile that moves a queue, or names an unknown group, is refused (whichever profile is selected)
    with pytest.raises(TopologyError, match=r"profiles\.moved\.worker_groups\.bulk: only numbers may change"):
        parse_topology(moved, DEFAULT_TOPOLOGY_PATH, profile="moved")
    with pytest.raises(TopologyError, match=r"profiles\.ghost\.worker_groups\.nope: no such worker group"):
        parse_topology(ghost, DEFAULT_TOPOLOGY_PATH, profile="short")


# --- message size and the claim check ---------------------------------------------------------------


def test_max_message_bytes_defaults_to_sqs_maximum_of_1_mib(raw):
    # GIVEN the real file, and a queue that does not say
    assert all(spec["max_message_bytes"] == 1_048_576 for spec in raw["queues"].values())
    del raw["queues"]["high_priority"]["max_message_bytes"]
    # WHEN loaded THEN the queue takes SQS's maximum; a smaller limit stays a per-queue choice
    raw["queues"]["low_priority"]["max_message_bytes"] = 262_144
    topology = parse_topology(raw, SOURCE)
    assert topology.queues["high_priority"].max_message_bytes == 1_048_576
    assert topology.queues["low_priority"].max_message_bytes == 262_144
    # AND over SQS's maximum is refused
    raw["queues"]["low_priority"]["max_message_bytes"] = 1_048_577
    assert "max_message_bytes = 1048577 is outside the range SQS accepts (1024..1048576)" in _refused(raw)


def test_claim_check_is_off_unless_a_queue_opts_in(raw):
    # GIVEN the real file: `default` opts in
    topology = parse_topology(raw, SOURCE)
    # THEN its ceiling is read, and the others have none
    assert topology.queues["default"].claim_check_max_bytes == 16 * 1_048_576
    assert topology.queues["high_priority"].claim_check_max_bytes == 0


@pytest.mark.parametrize(
    ("ceiling", "expected"),
    [
        (1_048_576, "claim_check_max_bytes = 1048576: must be above max_message_bytes (1048576)"),
        (65 * 1_048_576, "and at most 67108864"),
        (-1, "claim_check_max_bytes: expected a non-negative int"),
        (True, "claim_check_max_bytes: expected a non-negative int"),
        ("4MiB", "claim_check_max_bytes: expected a non-negative int"),
    ],
)
def test_bad_claim_check_ceiling_is_refused(raw, ceiling, expected):
    # GIVEN a queue whose claim-check ceiling is not above its message limit, too large, or no number
    raw["queues"]["high_priority"]["claim_check_max_bytes"] = ceiling
    # WHEN loaded THEN it is refused naming the queue and the numbers
    message = _refused(raw)
    assert "queues.high_priority" in message and expected in message


# --- the schema's rules, strictly (pydantic models) ---------------------------------------------------


@pytest.mark.parametrize("value", [True, "3", 3.0])
def test_strict_int_refuses_bool_string_and_float_naming_the_queue(raw, value):
    # GIVEN max_receive_count given as `true`, a quoted "3" or 3.0
    raw["queues"]["low_priority"]["max_receive_count"] = value
    # WHEN parsed
    message = _refused(raw)
    # THEN refused, naming the queue's field, the value and the range it must be in
    assert f"queues.low_priority.max_receive_count: expected an int from 1 to 1000, got {value!r}" in message


def test_strict_int_in_retry_and_worker_groups(raw):
    # GIVEN retry.max_retries "3" and a worker group's concurrency `true`
    raw["retry"]["max_retries"] = "3"
    raw["worker_groups"]["bulk"]["concurrency"] = True
    # WHEN parsed
    message = _refused(raw)
    # THEN both are reported, each with its place and value
    assert "retry.max_retries: expected a non-negative int, got '3'" in message
    assert "worker_groups.bulk.concurrency: expected a positive int, got True" in message


@pytest.mark.parametrize(
    ("section", "where"),
    [
        (("queues", "high_priority"), "queues.high_priority"),
        (("worker_groups", "bulk"), "worker_groups.bulk"),
        (("retry",), "retry"),
    ],
)
def test_extra_keys_are_refused_naming_where_and_what_is_allowed(raw, section, where):
    # GIVEN a misspelt key in a queue, a worker group or the retry policy
    target = raw
    for key in section:
        target = target[key]
    target["concurency"] = 2
    # WHEN parsed
    message = _refused(raw)
    # THEN the error names the place, the key, and the keys allowed there
    assert f"{where}: unknown key(s) ['concurency'] (allowed: [" in message


def test_min_tasks_above_max_tasks_names_both_numbers(raw):
    # GIVEN a worker group that may shrink to 7 tasks but grow only to 6
    raw["worker_groups"]["bulk"]["min_tasks"] = 7
    # WHEN parsed THEN the group and both numbers are named
    assert "worker_groups.bulk: need 1 <= min_tasks (7) <= max_tasks (6)" in _refused(raw)


def test_claim_check_below_max_message_bytes_names_both_numbers(raw):
    # GIVEN a queue whose messages may be 262144 bytes but whose claim check starts at 200000
    raw["queues"]["low_priority"].update(max_message_bytes=262_144, claim_check_max_bytes=200_000)
    # WHEN parsed THEN the queue and both numbers are named
    message = _refused(raw)
    assert "queues.low_priority: claim_check_max_bytes = 200000" in message
    assert "max_message_bytes (262144)" in message


def test_several_broken_rules_are_reported_together(raw):
    # GIVEN two queues broken in different fields
    raw["queues"]["default"]["time_limit"] = "300"
    raw["queues"]["low_priority"]["retention_seconds"] = 10
    # WHEN parsed THEN one error names both, so one edit fixes both
    message = _refused(raw)
    assert "queues.default.time_limit" in message
    assert "queues.low_priority.retention_seconds = 10 is outside the range SQS accepts (60..1209600)" in message


def test_a_profile_may_hold_numbers_only_even_when_not_selected(raw):
    # GIVEN the `soak` profile changing a queue's SQS name, and a `local` profile giving a number as "5"
    raw["profiles"]["soak"]["queues"]["default"]["name"] = "soak-default"
    # WHEN the file is parsed without a profile, or with another one
    for profile in (None, "local"):
        message = _refused(raw, profile)
        # THEN the broken profile is refused all the same: a file is valid or not whichever profile runs
        assert "profiles.soak.queues.default: only numbers may change, not ['name']" in message


def test_a_profile_number_is_strict_too(raw):
    # GIVEN a profile giving a time limit as "14"
    raw["profiles"]["local"]["queues"]["default"]["time_limit"] = "14"
    # WHEN parsed (with no profile) THEN the profile's field and value are named
    assert "profiles.local.queues.default.time_limit: expected a positive int, got '14'" in _refused(raw)


def test_profile_model_holds_exactly_the_number_fields_of_queues_and_worker_groups():
    # GIVEN the models
    from core.topology import Profile, QueueSpec, WorkerGroup

    def numbers(model) -> set[str]:
        return {name for name, field in model.model_fields.items() if field.annotation is int}

    queue_overlay = Profile.model_fields["queues"].annotation.__args__[1]
    group_overlay = Profile.model_fields["worker_groups"].annotation.__args__[1]
    # WHEN their fields are compared THEN a profile may set every number, and nothing else
    assert set(queue_overlay.model_fields) == numbers(QueueSpec)
    assert set(group_overlay.model_fields) == numbers(WorkerGroup)
    assert {"name", "dlq", "tasks"}.isdisjoint(queue_overlay.model_fields)
    assert "queues" not in group_overlay.model_fields
