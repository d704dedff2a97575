"""The production settings: `manage.py check --deploy` has nothing to say; the HTTP-only mode is what it claims."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

from devstack.processes import REPO_ROOT


def _production_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "SQS_", "API_", "CLAIM_"))}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "api.settings.production",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),  # as Secrets Manager's generated one: long and random
        "DJANGO_ALLOWED_HOSTS": "api.example.com",
        "API_TOKENS": secrets.token_urlsafe(32),
        "AWS_ACCOUNT_ID": "123456789012",
        "CLAIM_CHECK_BUCKET": "celery-sqs-prod-claim-check",
        "AWS_DEFAULT_REGION": "eu-west-1",
        **extra,
    }


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _settings(env: dict[str, str], *names: str) -> dict:
    code = (
        "import django, json; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {list(names)!r}}}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_check_deploy_has_no_warning_with_production_settings(tmp_path):
    # GIVEN the production settings with what ECS injects (HTTPS: the default)
    env = _production_env(tmp_path)

    # WHEN Django's deployment checklist runs, failing on any warning
    done = _manage(env, "check", "--deploy", "--fail-level", "WARNING")

    # THEN it passes and says nothing
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (1 silenced)" in done.stdout
    # AND the one silenced check is the HSTS-preload reminder (preloading is the domain owner's opt-in)
    assert _settings(env, "SILENCED_SYSTEM_CHECKS") == {"SILENCED_SYSTEM_CHECKS": ["security.W021"]}


def test_hsts_preload_opt_in_silences_nothing(tmp_path):
    # GIVEN production settings with preload chosen
    env = _production_env(tmp_path, DJANGO_HSTS_PRELOAD="true")
    # WHEN the checklist runs
    done = _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    # THEN it passes with nothing silenced
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)" in done.stdout


def test_https_settings_behind_the_alb(tmp_path):
    # GIVEN the production settings WHEN they are loaded
    values = _settings(
        _production_env(tmp_path),
        "SECURE_SSL_REDIRECT",
        "SECURE_PROXY_SSL_HEADER",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "X_FRAME_OPTIONS",
    )
    # THEN HTTPS is assumed, as the ALB's X-Forwarded-Proto reports it
    assert values == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "X_FRAME_OPTIONS": "DENY",
    }


def test_http_only_mode_drops_secure_cookies_redirect_and_hsts(tmp_path):
    # GIVEN the production settings in HTTP-only mode (an ALB without a certificate)
    env = _production_env(tmp_path, DJANGO_HTTP_ONLY="true")
    # WHEN they are loaded
    values = _settings(
        env, "HTTP_ONLY", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS"
    )
    # THEN nothing needs HTTPS, so the admin login works over HTTP
    assert values == {
        "HTTP_ONLY": True,
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
    }
    # AND Django's checklist still reports what the mode gives up
    done = _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in done.stderr + done.stdout


def test_production_refuses_to_start_without_its_secret_key(tmp_path):
    # GIVEN production settings without the injected DJANGO_SECRET_KEY
    env = _production_env(tmp_path)
    del env["DJANGO_SECRET_KEY"]
    # WHEN Django starts THEN it refuses, naming the variable
    done = _manage(env, "check")
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY" in done.stderr


def test_the_api_refuses_to_start_without_a_token_but_other_processes_need_none(tmp_path):
    # GIVEN production settings without API_TOKENS
    env = _production_env(tmp_path)
    del env["API_TOKENS"]
    # WHEN the api's WSGI application loads (what gunicorn imports)
    api = subprocess.run(
        [sys.executable, "-c", "import api.wsgi"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    # THEN it refuses, naming the variable
    assert api.returncode != 0
    assert "API_TOKENS is required by the api in production" in api.stderr
    # AND Django itself (workers, beat, migrations) starts without it
    assert _manage(env, "check").returncode == 0
