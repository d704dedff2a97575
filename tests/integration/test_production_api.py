"""The api as the image runs it: bin/start-api (gunicorn) with the production settings and collected static files.

Static files are served by the app (whitenoise), the admin logs in over plain HTTP in the HTTP-only mode,
HTTPS mode redirects and sends HSTS, the jobs API wants its token, and the logs are JSON lines.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest
from django.db import connection

from api.deploy_mode import HTTP_ONLY_WARNING
from devstack import processes
from devstack.processes import REPO_ROOT

pytestmark = pytest.mark.integration

TOKEN = secrets.token_urlsafe(24)
SECRET_KEY = secrets.token_urlsafe(50)


@pytest.fixture(scope="module")
def collected_static(tmp_path_factory):
    """`collectstatic` as the Dockerfile runs it, into a directory of this test's own."""
    root = tmp_path_factory.mktemp("static")
    # As in the image's build: no endpoint, bucket, database or AWS setting in the environment.
    dropped = ("SQS_", "CLAIM_", "DATABASE_", "DJANGO_", "AWS_")
    build = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env = {**build, "DJANGO_SETTINGS_MODULE": "api.settings.collectstatic", "DJANGO_STATIC_ROOT": str(root)}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        timeout=180,
    )
    assert (root / "staticfiles.json").exists()
    return root


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] or "postgres"
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _production_env(static_root, sqs_endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": processes.venv_path(),
        "DJANGO_SETTINGS_MODULE": "api.settings.production",
        "DATABASE_URL": _database_url(),
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_STATIC_ROOT": str(static_root),
        "API_TOKENS": TOKEN,
        "SQS_ENDPOINT_URL": sqs_endpoint,
        **extra,
    }


@pytest.fixture
def start_api(transactional_db, start_process, collected_static, unreachable_endpoint):
    def start(**extra: str) -> tuple[str, object]:
        port = processes.free_port()
        bind = {"API_BIND": f"127.0.0.1:{port}", "API_WORKERS": "1"}
        env = _production_env(collected_static, unreachable_endpoint, **bind, **extra)
        api = start_process("api", [str(REPO_ROOT / "bin" / "start-api")], env=env, ready="Booting worker")
        base = f"http://127.0.0.1:{port}"
        processes.wait_for(lambda: _status(base + "/healthz") == 200, timeout=60, what="the api to answer")
        return base, api

    return start


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Answer:
    """A response read whole (status, headers, body), so the connection is closed at once."""

    def __init__(self, response):
        self.status, self.headers, self.body = response.status, response.headers, response.read()

    def read(self) -> bytes:
        return self.body


def _open(url: str, *, opener=None, data: bytes | None = None, headers: dict | None = None) -> Answer:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener(NoRedirect)).open(request, timeout=30) as response:
            return Answer(response)
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error)


def _status(url: str) -> int | None:
    try:
        return _open(url).status
    except urllib.error.URLError:
        return None


def test_http_only_mode_serves_the_styled_admin_and_logs_in_over_http(
    start_api, collected_static, unreachable_endpoint
):
    # GIVEN an admin user, created as the runbook's first login does (createsuperuser, production settings)
    env = {**os.environ, **_production_env(collected_static, unreachable_endpoint)}
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "a@example.com",
        ],
        cwd=REPO_ROOT,
        env={**env, "DJANGO_SUPERUSER_PASSWORD": "pw-for-tests"},
        check=True,
        timeout=120,
    )
    # AND the api as an ALB without a certificate runs it (HTTP-only mode)
    base, _ = start_api(DJANGO_HTTP_ONLY="true")
    jar = CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)

    # WHEN the login page and the stylesheets it links are fetched
    page = _open(base + "/admin/login/", opener=browser)
    html = page.read().decode()
    css = re.findall(r'href="(/static/admin/css/[^"]+\.css)"', html)

    # THEN the page links hashed stylesheets, and they and the plain name are served, as CSS, cacheable
    assert page.status == 200 and css
    assert any(re.search(r"base\.[0-9a-f]{12}\.css$", href) for href in css)
    for href in [*css, "/static/admin/css/base.css"]:
        answer = _open(base + href)
        assert answer.status == 200, href
        assert answer.headers["Content-Type"].startswith("text/css")
    hashed = next(href for href in css if "base." in href)
    assert "immutable" in _open(base + hashed).headers["Cache-Control"]

    # WHEN the admin logs in over plain HTTP
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": csrf, "username": "admin", "password": "pw-for-tests", "next": "/admin/"}
    ).encode()
    login = _open(base + "/admin/login/", opener=browser, data=form, headers={"Referer": base + "/admin/login/"})

    # THEN the session cookie is not Secure (a browser sends it back over HTTP) and the admin opens
    assert login.status == 302 and login.headers["Location"] == "/admin/"
    session = next(c for c in jar if c.name == "sessionid")
    assert not session.secure
    admin = _open(base + "/admin/", opener=browser)
    assert admin.status == 200 and "Site administration" in admin.read().decode()
    assert admin.headers["X-Frame-Options"] == "DENY"


def test_https_mode_redirects_plain_http_and_sends_hsts_behind_the_alb(start_api):
    # GIVEN the api with the production settings as they are with a certificate (HTTPS)
    base, _ = start_api()

    # WHEN a request arrives as plain HTTP, and one as the ALB forwards HTTPS
    plain = _open(base + "/admin/login/")
    forwarded = _open(base + "/admin/login/", headers={"X-Forwarded-Proto": "https"})

    # THEN the first is redirected to HTTPS, the second served with HSTS and no framing
    assert plain.status == 301 and plain.headers["Location"].startswith("https://")
    assert forwarded.status == 200
    assert forwarded.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert forwarded.headers["X-Frame-Options"] == "DENY"
    # AND the ALB's health check (HTTP, no forwarded header) is answered, not redirected
    assert _open(base + "/healthz").status == 200


def test_the_jobs_api_wants_its_token_and_the_logs_are_json_lines(start_api):
    # GIVEN the api in production settings with one token
    base, api = start_api(DJANGO_HTTP_ONLY="true")
    body = json.dumps({"kind": "echo", "payload": {"message": "hi"}}).encode()
    headers = {"Content-Type": "application/json"}

    # WHEN a job is posted without a token, and a job is read with it
    refused = _open(base + "/api/jobs", data=body, headers=headers)
    found = _open(base + "/api/jobs/999", headers={"Authorization": f"Bearer {TOKEN}"})

    # THEN the first is a JSON 401, the second passes (no such job)
    assert refused.status == 401
    assert json.loads(refused.read()) == {"error": "authentication required: send `Authorization: Bearer <token>`"}
    assert found.status == 404

    # AND Django's log lines are JSON objects, one a line, the HTTP-only warning among them (gunicorn's own
    # start-up and access lines are its format, not Django's)
    entries = [json.loads(line) for line in api.log().splitlines() if line.startswith("{")]
    assert {"level": "WARNING", "logger": "api.deploy_mode", "message": HTTP_ONLY_WARNING}.items() <= next(
        e for e in entries if e["logger"] == "api.deploy_mode"
    ).items()
