"""An HTTP proxy in front of the SQS endpoint that counts requests by action, and the requests SQS bills for them
(one per started 64 KiB chunk of a request's payload)."""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from core.sqs_billing import billed_requests
from devstack.sqs_actions import request_action

_XML_MESSAGE = re.compile(rb"<Message>")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def received_messages(body: bytes) -> int:
    """How many messages a ReceiveMessage response carries."""
    if body.lstrip().startswith(b"{"):
        try:
            return len(json.loads(body).get("Messages") or [])
        except ValueError:
            return 0
    return len(_XML_MESSAGE.findall(body))


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A stopped worker's long poll: the client is gone when the answer comes. Nothing to report.
        pass


class CountingProxy:
    """Forwards every request to `upstream` and counts it; ReceiveMessage split into empty and not."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.counts: Counter = Counter()
        self.messages_received = 0
        self.billed = 0  # requests as billed: a call carrying 100 KiB counts 2
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> Counter:
        with self._lock:
            counted = Counter(self.counts)
            counted["messages_received"] = self.messages_received
            return counted

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.messages_received = 0
            self.billed = 0

    def billed_requests(self) -> int:
        with self._lock:
            return self.billed

    def _record(self, action: str, response_body: bytes, request_body: bytes = b"") -> None:
        with self._lock:
            # The payload is what the call carries either way (a send's message, a receive's messages); the HTTP
            # body slightly overstates it (JSON framing), so a message just under a 64 KiB boundary may count one more.
            self.billed += billed_requests(max(len(request_body), len(response_body)))
            if action == "ReceiveMessage":
                n = received_messages(response_body)
                self.messages_received += n
                self.counts["ReceiveMessage" if n else "ReceiveMessage(empty)"] += 1
            else:
                self.counts[action] += 1

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs expect
            # Headers and body go out as separate sends: without TCP_NODELAY, Nagle's algorithm and the
            # client's delayed ACK add about 40 ms to every request.
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                upstream = getattr(self, "_upstream", None)
                if upstream is None:
                    # Long polls last 20 s: one upstream connection per client connection, never shared.
                    upstream = self._upstream = http.client.HTTPConnection(
                        proxy.upstream_host, proxy.upstream_port, timeout=60
                    )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                proxy._record(request_action(self.headers, body, self.path), payload, body)
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (BrokenPipeError, ConnectionResetError):
                    # A stopped worker's long poll: the request was forwarded and counted; nobody reads the answer.
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        return Handler
