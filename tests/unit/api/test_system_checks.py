"""Django's system checks pass on the test settings. Celery's Django fixup also runs them at every worker start (and
ignores what they report: only an exception in them stops the worker); the integration fixtures skip that
(CELERY_SKIP_CHECKS) to save 0.3 CPU-s a start, so this is where they are run."""

from __future__ import annotations

from django.core.management import call_command


def test_system_checks_report_no_error(capsys):
    # GIVEN the test settings, with the URLconf, models and admin the worker would load
    # WHEN Django's system checks run as `manage.py check` runs them
    call_command("check")  # raises SystemCheckError on any error

    # THEN they report nothing at error level
    assert "System check identified no issues" in capsys.readouterr().out
