"""An HTTP proxy to the SQS emulator that answers chosen SQS operations with an error, as a real endpoint
refusing them would (e.g. AccessDenied for DeleteMessageBatch); everything else is forwarded unchanged."""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class SqsRefusingProxy:
    """127.0.0.1:<port> forwarding to `upstream` (host, port); operations named in `refuse` (by their
    X-Amz-Target, e.g. "DeleteMessageBatch") get SQS's JSON error answer for `code` instead."""

    def __init__(self, upstream_port: int, *, refuse: set[str], code: str = "AccessDenied", status: int = 403):
        self.upstream_port, self.refuse, self.code, self.status = upstream_port, set(refuse), code, status
        self.refused: Counter = Counter()
        self.forwarded: Counter = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
                if operation in proxy.refuse:
                    proxy.refused[operation] += 1
                    self._answer(
                        proxy.status,
                        {"x-amzn-query-error": f"{proxy.code};Sender", "Content-Type": "application/x-amz-json-1.0"},
                        json.dumps(
                            {
                                "__type": f"com.amazonaws.sqs#{proxy.code}",
                                "message": f"refused by the test proxy: no sqs:{operation}",
                            }
                        ).encode(),
                    )
                    return
                proxy.forwarded[operation] += 1
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    upstream.request("POST", self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    headers = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
                    self._answer(response.status, headers, data)
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: dict, data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> SqsRefusingProxy:
        threading.Thread(target=self._server.serve_forever, name="sqs-refusing-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
