"""The local stack without surprises: login through make run's gunicorn (two workers) sticks; `make run` says
what it does step by step, writes the endpoints it chose where manage.py commands find them, removes them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import requests

from devstack import processes
from devstack.processes import REPO_ROOT

# What the test settings put in the environment, which a local stack must not see.
TEST_ENV = (
    "DJANGO_SETTINGS_MODULE",
    "QUEUE_TOPOLOGY",
    "SQS_ENDPOINT_URL",
    "CLOUDWATCH_ENDPOINT_URL",
    "SQLITE_PATH",
    "DATABASE_URL",
    "LOCAL_SQS_PORT",
    "LOCAL_API_PORT",
    "DJANGO_SECRET_KEY",
    "CLAIM_CHECK_BUCKET",
)


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_session_made_by_one_gunicorn_worker_is_accepted_by_the_other(transactional_db, start_process, tmp_path):
    # GIVEN a staff user in the test database, and the api as `make run` starts it: local settings, two workers
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # Hashed as the local settings check it (the test settings' MD5 hasher is not one of theirs).
    password = PBKDF2PasswordHasher().encode("pw-for-tests", "saltfortests", iterations=1000)
    get_user_model().objects.create(username="operator", password=password, is_staff=True)
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    api = start_process(
        "api",
        [str(REPO_ROOT / "bin" / "start-api")],
        env={
            "PATH": processes.venv_path(),
            "DJANGO_SETTINGS_MODULE": "api.settings.local",
            "QUEUE_TOPOLOGY_PROFILE": "",  # the test topology (QUEUE_TOPOLOGY) has no `local` profile
            "LOCAL_VAR_DIR": str(tmp_path / "var"),
            "API_BIND": f"127.0.0.1:{port}",
            "API_WORKERS": "2",
        },
    )
    processes.wait_for(lambda: api.alive() and _healthy(url), timeout=90, interval=0.5, what="the api")

    # WHEN the operator logs in through the admin's form (real HTTP, a session cookie)
    browser = requests.Session()
    form = browser.get(f"{url}/admin/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    login = browser.post(
        f"{url}/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token, "username": "operator", "password": "pw-for-tests", "next": "/admin/"},
        headers={"Referer": f"{url}/admin/login/"},
        allow_redirects=False,
        timeout=30,
    )
    assert login.status_code == 302, login.text[-2000:]

    # THEN ten staff-only requests all succeed, whichever worker answers each
    statuses = [browser.get(f"{url}/ops/queues.json", allow_redirects=False, timeout=30).status_code for _ in range(10)]
    assert statuses == [200] * 10


@pytest.mark.long_running  # a whole stack: moto, migrate, api, worker, beat, relay
def test_make_run_says_each_step_and_leaves_its_endpoints_for_manage_py(tmp_path):
    # GIVEN `make run`'s stack on ports that are not the defaults, its var/ and database in a folder of the test
    var = tmp_path / "var"
    sqs_port, api_port = processes.free_port(), processes.free_port()
    base_env = {k: v for k, v in os.environ.items() if k not in TEST_ENV}
    log_path = tmp_path / "run.log"
    stack_env = {
        **base_env,
        "LOCAL_VAR_DIR": str(var),
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "LOCAL_SQS_PORT": str(sqs_port),
        "LOCAL_API_PORT": str(api_port),
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("wb") as log:
        stack = subprocess.Popen(
            [sys.executable, "-m", "devstack.run"],
            cwd=REPO_ROOT,
            env=stack_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # WHEN it is ready
        def ready() -> bool:
            if stack.poll() is not None:
                raise RuntimeError(f"make run exited with {stack.returncode}:\n{log_path.read_text()[-4000:]}")
            return "ready in" in log_path.read_text()

        processes.wait_for(ready, timeout=240, interval=0.5, what="make run to be ready")
        output = log_path.read_text()

        # THEN each step said what it did and how long it took, and no health poll of its own was logged
        for step in ("queues", "migrate", "api started", "worker started", "api answering", "worker ready"):
            assert re.search(rf"^run: {step}\b.* \.\.\. \d+\.\d s$", output, re.MULTILINE), (step, output[-4000:])
        assert "/healthz" not in output
        # AND the endpoints it chose are in var/local-stack.json
        chosen = json.loads((var / "local-stack.json").read_text())
        assert chosen["sqs_endpoint"] == f"http://127.0.0.1:{sqs_port}"
        assert chosen["api_url"] == f"http://127.0.0.1:{api_port}"
        assert chosen["database"] == f"sqlite:///{tmp_path / 'db.sqlite3'}"

        # WHEN a manage.py command runs in another shell, no port or database exported
        command_env = {**base_env, "LOCAL_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "api.settings.local"}
        done = subprocess.run(
            [sys.executable, "manage.py", "queues", "--json"],
            cwd=REPO_ROOT,
            env=command_env,
            capture_output=True,
            text=True,
            timeout=120,
        )

        # THEN it reads that stack's queues
        assert done.returncode == 0, done.stderr[-3000:]
        snapshot = json.loads(done.stdout)
        assert snapshot["endpoints"]["sqs"] == f"http://127.0.0.1:{sqs_port}"
        assert {q["error"] for q in snapshot["queues"]} == {None}
    finally:
        # WHEN the stack stops
        processes.stop(stack, grace=60)

    # THEN its endpoints are gone: commands no longer point at a stack that is not there
    assert not (var / "local-stack.json").exists()
    assert stack.returncode == 0
