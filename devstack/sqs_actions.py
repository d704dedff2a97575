"""Which SQS action an HTTP request calls, for the JSON protocol (X-Amz-Target) and the query protocol (Action=)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit


def request_action(headers, body: bytes, path: str) -> str:
    """The SQS action of a request ("SendMessage", ...), or "other"; `headers` is any mapping with .get()."""
    target = headers.get("X-Amz-Target", "")
    if target:
        return target.rsplit(".", 1)[-1]
    query = parse_qs(urlsplit(path).query)
    if "Action" in query:
        return query["Action"][0]
    if body and b"Action=" in body:
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    return "other"
