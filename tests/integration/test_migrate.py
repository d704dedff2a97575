"""bin/migrate, the task every deploy runs before the services roll (infra/migrations.py): with production
settings and the database parts ECS injects from an RDS secret, it migrates an empty PostgreSQL database,
does nothing the second time, and exits non-zero when it cannot."""

from __future__ import annotations

import os
import subprocess
import uuid

import psycopg
import pytest

from devstack.processes import REPO_ROOT, venv_path

pytestmark = pytest.mark.integration

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture
def empty_database():
    try:
        admin = psycopg.connect(ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL must answer on 127.0.0.1:5432 (user postgres): {exc}", pytrace=False)
    name = f"migrate_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(database: str) -> subprocess.CompletedProcess:
    # Exactly what the migration task gets on ECS: production settings, the queues by account, the database
    # as host/port/name plus user/password (the RDS secret's fields), a password that needs quoting.
    env = {
        "PATH": venv_path(),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DJANGO_SETTINGS_MODULE": "api.settings.production",
        "DJANGO_SECRET_KEY": "test-only-not-secret",
        "AWS_ACCOUNT_ID": "123456789012",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CLAIM_CHECK_BUCKET": "celery-sqs-prod-claim-check",  # infra gives every container of the stack its name
        "DATABASE_HOST": "127.0.0.1",
        "DATABASE_PORT": "5432",
        "DATABASE_NAME": database,
        "DATABASE_USER": "postgres",
        "DATABASE_PASSWORD": "p@ss/w:rd?",
    }
    return subprocess.run(
        [str(REPO_ROOT / "bin" / "migrate")], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def test_bin_migrate_creates_every_table_the_services_need_then_does_nothing(empty_database):
    # GIVEN an empty PostgreSQL database (a first deploy)
    # WHEN the migration task runs
    first = _migrate(empty_database)

    # THEN it succeeds, and the tables beat and the api need from their first second exist
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "migrations: ok" in first.stdout
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={empty_database}") as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"django_celery_beat_crontabschedule", "jobs_job", "workers_taskexecution", "auth_user"} <= tables

    # WHEN the next deploy runs it again
    second = _migrate(empty_database)
    # THEN it applies nothing and still succeeds
    assert second.returncode == 0, second.stderr[-3000:]
    assert "No migrations to apply" in second.stdout


def test_bin_migrate_fails_loudly_when_the_database_is_not_there():
    # GIVEN a database name that does not exist
    # WHEN the migration task runs
    result = _migrate(f"missing_{uuid.uuid4().hex[:8]}")
    # THEN it exits non-zero (the deploy fails) and says why
    assert result.returncode != 0
    assert "does not exist" in result.stderr
