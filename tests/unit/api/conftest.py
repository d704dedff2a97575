"""Fixtures for the api's unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def fresh_fast_path():
    """A broker failure in one test must not pause the next test's fast path (api/jobs/outbox.py)."""
    from api.jobs.outbox import fast_path_pause

    fast_path_pause.failed_at = None
    yield
    fast_path_pause.failed_at = None
