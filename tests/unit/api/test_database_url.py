"""DATABASE_URL, or the parts ECS injects from an RDS-generated secret (infra/database.py), composed with quoting."""

from __future__ import annotations

import dj_database_url
import pytest

from api.settings.base import database_url_from_parts
from core.env import EnvError

PARTS = {"DATABASE_HOST": "db.internal", "DATABASE_PORT": "5433", "DATABASE_NAME": "celery", "DATABASE_USER": "celery"}


def test_parts_compose_a_url_that_survives_any_password(monkeypatch):
    # GIVEN the parts, with a generated password holding URL delimiters
    for key, value in {**PARTS, "DATABASE_PASSWORD": "p@ss/w:rd?#%"}.items():
        monkeypatch.setenv(key, value)
    # WHEN composed and parsed as Django will
    parsed = dj_database_url.parse(database_url_from_parts())
    # THEN every part comes back intact
    assert (parsed["HOST"], parsed["PORT"], parsed["NAME"]) == ("db.internal", 5433, "celery")
    assert (parsed["USER"], parsed["PASSWORD"]) == ("celery", "p@ss/w:rd?#%")


def test_without_a_host_there_is_no_url(monkeypatch):
    monkeypatch.delenv("DATABASE_HOST", raising=False)
    assert database_url_from_parts() is None


def test_a_host_without_its_credentials_names_what_is_missing(monkeypatch):
    monkeypatch.setenv("DATABASE_HOST", "db.internal")
    for key in ("DATABASE_USER", "DATABASE_PASSWORD", "DATABASE_NAME"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(EnvError, match="DATABASE_USER"):
        database_url_from_parts()
