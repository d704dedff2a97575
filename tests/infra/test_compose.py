"""docker-compose.yml (for those with Docker) parses and runs the same start scripts as ECS and `make run`."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_api_worker_and_beat_run_the_bin_start_scripts_of_the_image():
    # GIVEN the compose file
    services = _compose()["services"]

    # WHEN the app services' commands are read
    commands = {name: services[name]["command"] for name in ("api", "worker", "beat")}

    # THEN each runs its start script, which exists and is executable
    assert commands == {"api": ["bin/start-api"], "worker": ["bin/start-worker"], "beat": ["bin/start-beat"]}
    for [script] in commands.values():
        assert os.access(REPO_ROOT / script, os.X_OK), script
    # AND they all run the image built from the repository's Dockerfile, with production settings
    for name in ("api", "worker", "beat", "queues", "migrate"):
        assert services[name]["image"] == "celery-sqs:local"
        assert services[name]["build"] == "."
        assert services[name]["environment"]["DJANGO_SETTINGS_MODULE"] == "api.settings.production"


def test_the_stack_has_postgres_an_sqs_emulator_and_creates_the_queues_before_the_app_starts():
    # GIVEN the compose file
    services = _compose()["services"]

    # WHEN the supporting services and the app's dependencies are read
    # THEN PostgreSQL 16 and the moto server (pinned) are there, on the endpoint the app is given
    assert services["postgres"]["image"] == "postgres:16"
    assert services["sqs"]["image"].startswith("motoserver/moto:5.")
    assert services["api"]["environment"]["SQS_ENDPOINT_URL"] == "http://sqs:9324"
    assert "9324" in services["sqs"]["command"]
    # AND queues (from the topology, devstack/queues.py) and migrations finish before api, worker, beat
    assert "create_queues" in " ".join(services["queues"]["command"])
    for name in ("api", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["queues"]["condition"] == "service_completed_successfully"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"


def test_worker_and_beat_have_the_ecs_health_checks_and_the_worker_its_grace_period():
    # GIVEN the compose file
    services = _compose()["services"]

    # WHEN the worker's and beat's health checks are read
    # THEN they are the ones ECS runs, and the worker gets ECS's 120 s to shut down
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "python", "-m", "workers.healthcheck", "worker"]
    assert services["beat"]["healthcheck"]["test"] == ["CMD", "python", "-m", "workers.healthcheck", "beat"]
    assert services["worker"]["stop_grace_period"] == "120s"
    assert "deploy" not in services["beat"]  # never replicas: exactly one beat


def test_the_compose_api_serves_plain_http_with_a_token():
    # GIVEN the compose file's api (production settings on http://localhost:8000)
    services = _compose()["services"]
    env = services["api"]["environment"]
    # THEN it runs the HTTP-only mode (no redirect to an HTTPS nobody serves) and has the token the api needs
    assert env["DJANGO_HTTP_ONLY"] == "true"
    assert env["API_TOKENS"]
