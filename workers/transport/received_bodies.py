"""Each received SQS body decoded once, kombu's way, for the ETA hop's plan and then for Celery (before, each body
was base64- and JSON-decoded twice: once to plan the hop, once in kombu's _message_to_python)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kombu.utils.encoding import bytes_to_str

from workers import eta_hop


class ReceivedBodies:
    """The decoded bodies of one receive's messages, by message, while the channel hands them over."""

    def __init__(self, *, decode: Callable[[Any], bytes], parse: Callable[[str], dict]):
        # kombu's Channel._decode_python_message_body and _prepare_json_payload, the first two steps of its
        # _message_to_python: what Celery gets from take() is what kombu would have made of the same body.
        self._decode = decode
        self._parse = parse
        self._decoded: dict[int, tuple[str, dict]] = {}

    @contextlib.contextmanager
    def decoded(self, messages: Iterable[dict]) -> Iterator[None]:
        """Decode each message's body for the time of the block; nothing decoded is kept after it (a hopped
        message's, or one kombu released to SQS without giving it to Celery)."""
        keys = []
        for message in messages:
            # A body that cannot be decoded here is left to kombu's own path, which raises what it raised before.
            with contextlib.suppress(Exception):
                text = bytes_to_str(self._decode(message["Body"]))
                self._decoded[id(message)] = (text, self._parse(text))
                keys.append(id(message))
        try:
            yield
        finally:
            for key in keys:
                self._decoded.pop(key, None)

    def headers(self, message: dict) -> dict | None:
        """The kombu envelope's headers of a received message (None: not an envelope), for the hop's plan."""
        decoded = self._decoded.get(id(message))
        if decoded is None:
            return eta_hop.envelope_headers(message.get("Body") or "")
        headers = decoded[1].get("headers")
        return headers if isinstance(headers, dict) else None

    def take(self, message: dict) -> tuple[str, dict] | None:
        """(text, payload) of a message decoded in this block, once; None otherwise."""
        return self._decoded.pop(id(message), None)

    def pending(self) -> int:
        return len(self._decoded)
