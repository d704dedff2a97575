"""The local SECRET_KEY: drawn once into var/, private, and the same in every process of the local stack."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from devstack.processes import REPO_ROOT

# What the test settings put in the environment, which the local settings must not see.
TEST_SETTINGS_ENV = (
    "DJANGO_SECRET_KEY",
    "QUEUE_TOPOLOGY",
    "SQS_ENDPOINT_URL",
    "CLOUDWATCH_ENDPOINT_URL",
    "SQLITE_PATH",
)
PRINT_SECRET = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"


def _secret_in_a_new_process(var_dir) -> str:
    env = {k: v for k, v in os.environ.items() if k not in TEST_SETTINGS_ENV}
    env.update(
        DJANGO_SETTINGS_MODULE="api.settings.local",
        LOCAL_VAR_DIR=str(var_dir),
        SQLITE_PATH=str(var_dir / "db.sqlite3"),
    )
    done = subprocess.run(
        [sys.executable, "-c", PRINT_SECRET], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_two_processes_with_the_local_settings_get_the_same_secret_key(tmp_path):
    # GIVEN a fresh var/ folder (no secret yet)
    # WHEN two processes load the local settings one after the other (two gunicorn workers, a manage.py shell)
    first = _secret_in_a_new_process(tmp_path)
    second = _secret_in_a_new_process(tmp_path)

    # THEN they sign with the same key, so a session made by one is accepted by the other
    assert len(first) >= 50
    assert first == second


def test_the_secret_is_written_once_readable_by_its_owner_only(tmp_path):
    # GIVEN no secret yet
    from devstack.local_secret import SECRET_FILE_NAME, local_secret_key

    # WHEN it is asked for twice
    key = local_secret_key(tmp_path)
    again = local_secret_key(tmp_path)

    # THEN one file holds it, mode 0600
    path = tmp_path / SECRET_FILE_NAME
    assert again == key == path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE_NAME]  # no temporary file left behind


def test_var_is_ignored_by_git():
    # GIVEN the repository's ignore rules
    # WHEN git is asked about the secret's default place
    done = subprocess.run(
        ["git", "check-ignore", "-q", "var/local-secret-key"], cwd=REPO_ROOT, capture_output=True, timeout=30
    )

    # THEN it is never committed
    assert done.returncode == 0
