"""Production log records are one JSON line each, with the task and job they serve; local ones plain text."""

from __future__ import annotations

import json
import logging
import logging.config

import pytest
from celery import Celery

from api.log_format import JsonFormatter, TaskContextFilter, logging_config


def _record(msg: str = "hello %s", args=("world",), exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("api.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_writes_one_line_with_the_fields():
    # GIVEN a record with an extra field
    record = _record(queue="default")
    # WHEN it is formatted
    line = JsonFormatter().format(record)
    # THEN it is one JSON object on one line, with the message rendered and the extra field kept
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "hello world"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "api.test"
    assert entry["queue"] == "default"
    assert entry["time"].endswith("+00:00")


def test_json_formatter_keeps_a_traceback_on_the_same_line():
    # GIVEN a record of an exception
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        record = _record("failed", args=(), exc_info=sys.exc_info())
    # WHEN it is formatted THEN the traceback is one escaped string in the one line
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_json_formatter_logs_values_json_cannot_hold_as_text():
    import uuid

    task_id = uuid.uuid4()
    assert json.loads(JsonFormatter().format(_record(task_id=task_id)))["task_id"] == str(task_id)


def test_task_context_filter_adds_task_and_job_ids_inside_a_task():
    # GIVEN a Celery task that logs, and the filter
    app = Celery("log-format-test", set_as_current=False)
    seen: list[logging.LogRecord] = []

    @app.task(name="demo.logs")
    def logs(*, job_id):
        record = _record("inside")
        TaskContextFilter().filter(record)
        seen.append(record)

    # WHEN the task runs (eagerly, with a request of its own) for job 42
    result = logs.apply(kwargs={"job_id": 42}, task_id="t-123")

    # THEN the record carries the task's id and name and the job id
    assert result.successful(), result.traceback
    [record] = seen
    assert (record.task_id, record.task_name, record.job_id) == ("t-123", "demo.logs", 42)


def test_task_context_filter_adds_nothing_outside_a_task():
    record = _record()
    assert TaskContextFilter().filter(record) is True
    assert not hasattr(record, "task_id")


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_logging_config_builds_its_formatter_and_filter(log_format):
    # GIVEN Django's LOGGING for each format
    config = logging_config(log_format=log_format, level="INFO")
    handler = config["handlers"]["console"]
    # WHEN logging's own configurator builds the handler's formatter and filter (not the whole config:
    # dictConfig would close the test run's handlers)
    configurator = logging.config.DictConfigurator(config)
    formatter = configurator.configure_formatter(config["formatters"][handler["formatter"]])
    [filter_name] = handler["filters"]
    log_filter = configurator.configure_filter(config["filters"][filter_name])
    record = _record()
    log_filter.filter(record)
    line = formatter.format(record)
    # THEN JSON writes a JSON line, plain a text line, both with the message
    if log_format == "json":
        assert json.loads(line)["message"] == "hello world"
    else:
        assert " WARNING api.test " in line and line.endswith("hello world")


def test_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(log_format="xml", level="INFO")
