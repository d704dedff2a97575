"""Unit tests of workers/celery_config.py: broker location, safety settings, routes, result backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology
from workers.celery_config import (
    TRANSPORT,
    BrokerConfigError,
    BrokerEnv,
    as_django_settings,
    build_celery_settings,
    configured_long_poll_seconds,
    queue_url,
    task_routes,
)
from workers.transport import QUEUE_LIMITS_OPTION

LOCAL = BrokerEnv(endpoint_url="http://127.0.0.1:9324")
CREDENTIAL_WORDS = ("access_key", "secret", "session_token", "password", "aws_access", "userid")


@pytest.fixture(scope="module")
def topology():
    return load_topology(DEFAULT_TOPOLOGY_PATH, profile="")


@pytest.fixture(scope="module")
def local_settings(topology):
    return build_celery_settings(topology, LOCAL)


def _all_keys(value) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value] + [k for v in value.values() for k in _all_keys(v)]
    if isinstance(value, list | tuple):
        return [k for v in value for k in _all_keys(v)]
    return []


def test_local_endpoint_broker_url_and_transport(local_settings):
    # GIVEN a local endpoint
    # WHEN the settings are built (fixture)
    # THEN the endpoint is the broker URL's host:port, over plain HTTP, with our transport
    assert local_settings["broker_url"] == "sqs://127.0.0.1:9324"
    assert local_settings["broker_transport"] == TRANSPORT == "workers.transport:Transport"
    options = local_settings["broker_transport_options"]
    assert options["is_secure"] is False
    assert options["wait_time_seconds"] == 20


def test_local_endpoint_predefined_queue_urls(local_settings, topology):
    # GIVEN a local endpoint and no account id
    # WHEN the settings are built
    predefined = local_settings["broker_transport_options"]["predefined_queues"]
    # THEN every topology queue has a URL at the endpoint with moto's account
    assert predefined == {
        "default": {"url": "http://127.0.0.1:9324/123456789012/default"},
        "high_priority": {"url": "http://127.0.0.1:9324/123456789012/high-priority"},
        "low_priority": {"url": "http://127.0.0.1:9324/123456789012/low-priority"},
    }
    assert set(predefined) == set(topology.queues)


def test_local_endpoint_trailing_slash_and_prefix(topology):
    # GIVEN an endpoint with a trailing slash and a stage prefix
    broker = BrokerEnv(endpoint_url="http://localhost:4566/", queue_prefix="dev-")
    # WHEN the settings are built
    settings = build_celery_settings(topology, broker)
    # THEN neither URL doubles the slash and the prefix is on the SQS name
    assert settings["broker_url"] == "sqs://localhost:4566"
    url = settings["broker_transport_options"]["predefined_queues"]["high_priority"]["url"]
    assert url == "http://localhost:4566/123456789012/dev-high-priority"


def test_queue_limits_come_from_topology(local_settings, topology):
    # GIVEN the topology
    # WHEN the settings are built
    limits = local_settings["broker_transport_options"][QUEUE_LIMITS_OPTION]
    # THEN the transport gets each queue's visibility timeout, heartbeat, size limit and retention
    for key, spec in topology.queues.items():
        assert limits[key] == {
            "visibility_timeout": spec.visibility_timeout,
            "visibility_heartbeat_seconds": spec.visibility_heartbeat_seconds,
            "max_message_bytes": spec.max_message_bytes,
            "retention_seconds": spec.retention_seconds,
        }


def test_safety_settings(local_settings):
    # GIVEN the built settings
    s = local_settings
    # THEN at-least-once delivery, one message per process, JSON only
    assert s["task_acks_late"] is True
    assert s["task_reject_on_worker_lost"] is True
    assert s["task_acks_on_failure"] is False
    assert s["task_acks_on_timeout"] is False
    assert s["worker_prefetch_multiplier"] == 1
    assert s["accept_content"] == ["json"]
    assert s["task_serializer"] == "json"
    assert s["result_accept_content"] == ["json"]
    assert s["task_create_missing_queues"] is False
    assert s["worker_enable_remote_control"] is False
    assert 0 < s["worker_soft_shutdown_timeout"] < 110


def test_no_credentials_in_transport_options(local_settings):
    # GIVEN the built transport options
    keys = [k.lower() for k in _all_keys(local_settings["broker_transport_options"])]
    # THEN no key carries a credential: boto3's default chain supplies them
    for key in keys:
        for word in CREDENTIAL_WORDS:
            assert word not in key, key
    assert "sts_role_arn" not in keys


def test_aws_explicit_queue_urls_win(topology):
    # GIVEN an account id AND an explicit URL for one queue
    explicit = "https://sqs.eu-west-1.amazonaws.com/999999999999/custom-default"
    broker = BrokerEnv(region="eu-west-1", account_id="111122223333", queue_urls={"default": explicit})
    # WHEN the settings are built
    settings = build_celery_settings(topology, broker)
    predefined = settings["broker_transport_options"]["predefined_queues"]
    # THEN the explicit URL is used for it and the account builds the rest
    assert predefined["default"]["url"] == explicit
    assert predefined["low_priority"]["url"] == "https://sqs.eu-west-1.amazonaws.com/111122223333/low-priority"
    # AND on AWS the broker URL has no host and TLS is on
    assert settings["broker_url"] == "sqs://"
    assert settings["broker_transport_options"]["is_secure"] is True
    assert settings["broker_transport_options"]["region"] == "eu-west-1"


def test_aws_account_id_builds_url_with_prefix(topology):
    # GIVEN an account id, region and stage prefix
    broker = BrokerEnv(region="us-west-2", account_id="111122223333", queue_prefix="prod-")
    # WHEN a URL is asked for THEN it is the regional SQS URL with the prefixed name
    assert queue_url(topology, "high_priority", broker) == (
        "https://sqs.us-west-2.amazonaws.com/111122223333/prod-high-priority"
    )


def test_aws_without_anything_raises(topology):
    # GIVEN no endpoint, no account id and no explicit URLs
    broker = BrokerEnv()
    # WHEN the settings are built
    with pytest.raises(BrokerConfigError) as excinfo:
        build_celery_settings(topology, broker)
    # THEN the error tells which variable to set
    assert "SQS_QUEUE_URL_DEFAULT" in str(excinfo.value)
    assert "AWS_ACCOUNT_ID" in str(excinfo.value)


def test_aws_partial_urls_still_raise_for_the_rest(topology):
    # GIVEN explicit URLs for default only
    broker = BrokerEnv(queue_urls={"default": "https://sqs.us-east-1.amazonaws.com/1/default"})
    # WHEN the settings are built THEN the first queue without a URL is named
    with pytest.raises(BrokerConfigError, match="SQS_QUEUE_URL_HIGH_PRIORITY"):
        build_celery_settings(topology, broker)


def test_task_routes_from_topology(local_settings, topology):
    # GIVEN the topology's patterns
    # WHEN routes are built THEN each pattern routes to its queue key
    assert task_routes(topology) == {
        "jobs.*": {"queue": "default"},
        "priority.*": {"queue": "high_priority"},
        "newsletter.*": {"queue": "low_priority"},
    }
    assert local_settings["task_routes"] == task_routes(topology)
    assert local_settings["task_default_queue"] == "default"


def test_result_backend_off_by_default(local_settings):
    # GIVEN no result backend
    # THEN results are not stored
    assert local_settings["result_backend"] is None
    assert local_settings["task_ignore_result"] is True
    assert "result_expires" not in local_settings


def test_result_backend_django_db(topology):
    # GIVEN result_backend="django-db"
    # WHEN the settings are built
    settings = build_celery_settings(topology, LOCAL, result_backend="django-db")
    # THEN results are stored and expire
    assert settings["result_backend"] == "django-db"
    assert settings["task_ignore_result"] is False
    assert settings["result_expires"] == timedelta(days=1)


@pytest.mark.parametrize("backend", ["redis://localhost:6379/0", "django-cache", "DJANGO-DB"])
def test_unsupported_result_backend_raises(topology, backend):
    # GIVEN a result backend other than django-db
    # WHEN the settings are built THEN it is refused by name
    with pytest.raises(BrokerConfigError) as excinfo:
        build_celery_settings(topology, LOCAL, result_backend=backend)
    assert repr(backend) in str(excinfo.value)


def test_as_django_settings_prefixes_names(local_settings):
    # GIVEN the built settings
    # WHEN they are named for Django
    django_settings = as_django_settings(local_settings)
    # THEN every key is CELERY_<UPPER> and values are unchanged
    assert django_settings["CELERY_TASK_ACKS_LATE"] is True
    assert django_settings["CELERY_BROKER_URL"] == "sqs://127.0.0.1:9324"
    assert len(django_settings) == len(local_settings)
    assert all(k.startswith("CELERY_") for k in django_settings)


@pytest.mark.parametrize("seconds", [-0.001, 1.5])
def test_a_receive_ahead_coalesce_window_out_of_range_is_refused_at_start_up(topology, seconds):
    # GIVEN WORKER_RECEIVE_AHEAD_COALESCE_MS below 0 or above 1000
    # WHEN the settings are built THEN the setting is refused by name
    with pytest.raises(ValueError, match="WORKER_RECEIVE_AHEAD_COALESCE_MS"):
        build_celery_settings(topology, LOCAL, receive_ahead_coalesce_seconds=seconds)


def test_the_receive_ahead_coalesce_window_reaches_the_transport(topology):
    # GIVEN a 3 ms window WHEN the settings are built THEN the channel's option carries it
    settings = build_celery_settings(topology, LOCAL, receive_ahead_coalesce_seconds=0.003)
    assert settings["broker_transport_options"]["receive_ahead_coalesce_seconds"] == 0.003


@pytest.mark.parametrize("seconds", [0, 21, 2.5, True])
def test_a_long_poll_outside_1_to_20_whole_seconds_is_refused_at_start_up(topology, seconds):
    # GIVEN WORKER_LONG_POLL_SECONDS of 0 (short polling: an empty receive each time), over SQS's 20, or not whole
    # WHEN the settings are built THEN the setting is refused by name
    with pytest.raises(ValueError, match="WORKER_LONG_POLL_SECONDS"):
        build_celery_settings(topology, LOCAL, long_poll_seconds=seconds)


def test_a_shorter_long_poll_reaches_the_transport_and_the_default_is_20(topology, monkeypatch):
    # GIVEN a 2 s long poll (as the tests that wait for a worker to turn lost use)
    # WHEN the settings are built THEN the receive waits that long
    settings = build_celery_settings(topology, LOCAL, long_poll_seconds=2)
    assert settings["broker_transport_options"]["wait_time_seconds"] == 2
    # AND without the variable it is SQS's longest
    monkeypatch.delenv("WORKER_LONG_POLL_SECONDS", raising=False)
    assert configured_long_poll_seconds() == 20
    monkeypatch.setenv("WORKER_LONG_POLL_SECONDS", "2")
    assert configured_long_poll_seconds() == 2
