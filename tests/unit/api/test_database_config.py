"""The database settings: a PostgreSQL connection attempt gives up in seconds (a black hole is an outage)."""

from __future__ import annotations

from api.settings.base import DATABASE_CONNECT_TIMEOUT, database_config


def test_postgresql_connections_give_up_after_the_connect_timeout():
    # GIVEN a PostgreSQL URL WHEN configured THEN libpq gets connect_timeout (default 5 s)
    config = database_config("postgres://app@db.internal:5432/app")
    assert config["OPTIONS"]["connect_timeout"] == DATABASE_CONNECT_TIMEOUT == 5


def test_a_connect_timeout_in_the_url_wins():
    # GIVEN the URL sets its own WHEN configured THEN it is kept
    assert database_config("postgres://app@db:5432/app?connect_timeout=2")["OPTIONS"]["connect_timeout"] == 2
