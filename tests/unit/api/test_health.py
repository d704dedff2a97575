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


def test_unhealthy_database_is_a_503_without_internals(client, db, monkeypatch, caplog):
    from django.db import OperationalError, connection

    # GIVEN a database that refuses connections with a detailed error
    detail = 'connection to server at "db.internal" (10.0.2.9), port 5432 failed: password authentication failed'

    def refuse():
        raise OperationalError(detail)

    # WHEN the ALB (or anyone on the internet) checks health
    with monkeypatch.context() as patch:  # undone before the test database is torn down
        patch.setattr(connection, "cursor", refuse)
        response = client.get("/healthz")
    # THEN the answer says unhealthy and nothing more
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy"}
    # AND the detail is in the log, for the operator
    assert detail in caplog.text
