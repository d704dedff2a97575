"""The jobs API wants a bearer token (settings.API_TOKENS) and answers 401 in JSON without one."""

from __future__ import annotations

import json
import logging

import pytest

from api.jobs.auth import OPEN_WARNING, token_is_valid, warn_if_open

TOKEN = "t0ken-for-tests"  # noqa: S105


@pytest.fixture
def tokens(settings):
    settings.API_TOKENS = ["an-older-token", TOKEN]


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "authentication required: send `Authorization: Bearer <token>`"),
        ({"HTTP_AUTHORIZATION": "Bearer wrong"}, "invalid token"),
        ({"HTTP_AUTHORIZATION": f"Basic {TOKEN}"}, "authentication required: send `Authorization: Bearer <token>`"),
        ({"HTTP_AUTHORIZATION": "Bearer "}, "authentication required: send `Authorization: Bearer <token>`"),
    ],
)
@pytest.mark.parametrize("method", ["post", "get", "cancel"])
def test_no_or_wrong_token_is_a_json_401_and_stores_nothing(client, db, tokens, headers, error, method):
    from api.jobs.models import Job

    # GIVEN tokens are configured WHEN a request has none, or a wrong one
    if method == "post":
        body = json.dumps({"kind": "echo", "payload": {"message": "hi"}})
        response = client.post("/api/jobs", data=body, content_type="application/json", **headers)
    elif method == "cancel":
        response = client.post("/api/jobs/1/cancel", **headers)
    else:
        response = client.get("/api/jobs/1", **headers)
    # THEN it is a 401 in JSON that says what to send, and no job is stored
    assert response.status_code == 401
    assert response.json() == {"error": error}
    assert response["WWW-Authenticate"] == 'Bearer realm="jobs"'
    assert Job.objects.count() == 0


def test_a_configured_token_passes(client, db, tokens):
    # GIVEN tokens WHEN a request carries one of them (any of the list: rotation keeps the old one a while)
    response = client.get("/api/jobs/999", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    # THEN the view answers (no such job)
    assert response.status_code == 404
    assert response.json() == {"error": "no job 999"}


def test_token_comparison():
    assert token_is_valid("abc", ["x", "abc"])
    assert not token_is_valid("ab", ["abc"])
    assert not token_is_valid("abcd", ["abc"])
    assert not token_is_valid("", ["abc"])


def test_without_tokens_the_api_is_open_and_the_log_says_so(client, db, settings, caplog):
    # GIVEN no tokens (local settings, tests)
    settings.API_TOKENS = []
    # WHEN the app starts and a request comes without a token
    with caplog.at_level(logging.WARNING, logger="api.jobs.auth"):
        assert warn_if_open() is True
    response = client.get("/api/jobs/999")
    # THEN it is answered, and the start-up log said the API is open
    assert response.status_code == 404
    assert OPEN_WARNING in caplog.text


def test_with_tokens_there_is_no_open_warning(settings, caplog):
    settings.API_TOKENS = [TOKEN]
    with caplog.at_level(logging.WARNING, logger="api.jobs.auth"):
        assert warn_if_open() is False
    assert caplog.text == ""
