"""GET /healthz answers the ALB, whose Host header is the task's private IP."""

from __future__ import annotations


def test_healthz_answers_any_host(client, db, settings):
    # GIVEN production-like allowed hosts (the public name only)
    settings.ALLOWED_HOSTS = ["api.example.com"]
    # WHEN the ALB checks health with the task's IP as Host
    response = client.get("/healthz", HTTP_HOST="10.0.1.23:8000")
    # THEN it is healthy
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_other_paths_still_refuse_an_unknown_host(client, db, settings):
    # GIVEN the same allowed hosts WHEN another path is asked for with that Host
    settings.ALLOWED_HOSTS = ["api.example.com"]
    response = client.get("/api/jobs/1", HTTP_HOST="10.0.1.23:8000")
    # THEN Django refuses it
    assert response.status_code == 400
