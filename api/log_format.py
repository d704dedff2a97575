"""Log records as one JSON object per line (production) or plain text (local), with the task and job they serve."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has: anything else on a record came from `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
CONTEXT_FIELDS = ("task_id", "task_name", "job_id")


class TaskContextFilter(logging.Filter):
    """Adds task_id, task_name and job_id (the task's `job_id` keyword) to records logged while a Celery task
    runs in this thread; a record that already carries them (extra=) keeps its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        from celery import current_task  # imported late: settings load this module before Celery is set up

        task = current_task._get_current_object() if current_task else None
        if task is not None and getattr(task, "request", None) is not None and task.request.id:
            kwargs = task.request.kwargs if isinstance(task.request.kwargs, dict) else {}
            context = {"task_id": task.request.id, "task_name": task.name, "job_id": kwargs.get("job_id")}
            for name, value in context.items():
                if value is not None and getattr(record, name, None) is None:
                    setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One line per record: time (UTC, ISO 8601), level, logger, message, process, the task context when
    known, any `extra=` fields, and the traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra field that JSON cannot hold (a UUID, a datetime) is logged as its text.
        return json.dumps(entry, default=str, ensure_ascii=False)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
LOG_FORMATS = ("plain", "json")


def logging_config(*, log_format: str, level: str) -> dict:
    """Django's LOGGING for `log_format` ("plain" or "json")."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT = {log_format!r}: one of {', '.join(LOG_FORMATS)}")
    formatters = {
        "plain": {"format": PLAIN_FORMAT},
        "json": {"()": "api.log_format.JsonFormatter"},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"task_context": {"()": "api.log_format.TaskContextFilter"}},
        "formatters": {log_format: formatters[log_format]},
        # The process's real stderr: Celery redirects sys.stderr into a logger, and a handler bound to that
        # proxy (Django configures logging after beat starts) would feed its records back to itself.
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["task_context"],
                "stream": "ext://sys.__stderr__",
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"botocore": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
    }
