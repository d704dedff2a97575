"""Read one HTTP/1.1 message off a socket, framed by Content-Length, chunked encoding or the end of the stream."""

from __future__ import annotations

import http.client
import io
import socket
from dataclasses import dataclass

_MAX_LINE = 65536
_MAX_HEADERS = 200


class FramingError(Exception):
    """The peer sent something that is not HTTP/1.1, or closed the connection inside a message."""


class SocketReader:
    """Buffered reads over a socket without socket.makefile(), so another thread's close() really closes it."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> bool:
        data = self._sock.recv(65536)
        self._buffer += data
        return bool(data)

    def readline(self) -> bytes:
        """One line with its CRLF; b"" at the end of the stream; a partial line if the stream ends inside it."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > _MAX_LINE:
                raise FramingError("line too long")
            if not self._fill():
                line, self._buffer = self._buffer, b""
                return line
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not self._fill():
                raise FramingError(f"stream ended {n - len(self._buffer)} bytes short of the body")
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read_to_end(self) -> bytes:
        while self._fill():
            pass
        data, self._buffer = self._buffer, b""
        return data


@dataclass(frozen=True)
class HttpMessage:
    start_line: str  # "POST / HTTP/1.1" or "HTTP/1.1 200 OK"
    headers: http.client.HTTPMessage  # case-insensitive .get()
    head: bytes  # start line, headers and the blank line, as received
    wire_body: bytes  # the body exactly as framed on the wire (chunk sizes included)
    body: bytes  # the body with any chunked framing removed
    ends_connection: bool  # the connection cannot carry another message after this one
    framing: str  # "length", "chunked", "eof" (the body ends with the stream) or "none"

    @property
    def raw(self) -> bytes:
        return self.head + self.wire_body

    @property
    def status(self) -> int:
        return int(self.start_line.split()[1])

    def kept_alive(self) -> bytes:
        """This response as it would travel on a connection that stays open: without "Connection: close",
        and with a Content-Length if its body was framed by the end of the stream."""
        if not self.ends_connection:
            return self.raw
        hop = {"connection", "keep-alive"} | ({"content-length"} if self.framing == "eof" else set())
        lines = [self.start_line.replace("HTTP/1.0", "HTTP/1.1", 1)]
        lines += [f"{key}: {value}" for key, value in self.headers.items() if key.lower() not in hop]
        if self.framing == "eof":
            lines.append(f"Content-Length: {len(self.body)}")
        return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + self.wire_body


def read_message(
    reader: SocketReader, *, request_method: str | None = None, continue_to: socket.socket | None = None
) -> HttpMessage | None:
    """The next message, or None when the peer closed between messages.

    `request_method` is None to read a request, or the method of the request this response answers (a HEAD
    answer has no body). A request with "Expect: 100-continue" gets "100 Continue" on `continue_to` before its
    body is read (curl waits for it; kombu's curl client sends an empty Expect to avoid it, botocore never
    sends it)."""
    start = reader.readline()
    while start in (b"\r\n", b"\n"):  # tolerated before a request line (RFC 9112 2.2)
        start = reader.readline()
    if not start:
        return None
    lines = [start]
    while True:
        line = reader.readline()
        if not line:
            raise FramingError("stream ended inside the headers")
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            break
        if len(lines) > _MAX_HEADERS:
            raise FramingError("too many headers")
    head = b"".join(lines)
    start_line = start.decode("latin-1").strip()
    headers = http.client.parse_headers(io.BytesIO(b"".join(lines[1:])))
    is_response = request_method is not None
    if is_response and not start_line.startswith("HTTP/"):
        raise FramingError(f"not an HTTP response: {start_line[:80]!r}")
    if not is_response and len(start_line.split()) != 3:
        raise FramingError(f"not an HTTP request: {start_line[:80]!r}")

    if not is_response and continue_to is not None and "100-continue" in headers.get("Expect", "").lower():
        continue_to.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    closes = "close" in headers.get("Connection", "").lower() or start_line.endswith("HTTP/1.0")
    if is_response:
        status = int(start_line.split()[1])
        if request_method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return HttpMessage(start_line, headers, head, b"", b"", closes, "none")
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        wire_body, body = _read_chunked(reader)
        return HttpMessage(start_line, headers, head, wire_body, body, closes, "chunked")
    length = headers.get("Content-Length")
    if length is not None:
        body = reader.read_exact(int(length))
        return HttpMessage(start_line, headers, head, body, body, closes, "length")
    if is_response:
        body = reader.read_to_end()
        return HttpMessage(start_line, headers, head, body, body, True, "eof")
    return HttpMessage(start_line, headers, head, b"", b"", closes, "none")  # a request without a body


def _read_chunked(reader: SocketReader) -> tuple[bytes, bytes]:
    wire, body = [], []
    while True:
        size_line = reader.readline()
        if not size_line:
            raise FramingError("stream ended inside a chunked body")
        wire.append(size_line)
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        chunk = reader.read_exact(size + 2)  # the chunk and its CRLF
        wire.append(chunk)
        body.append(chunk[:size])
    while True:  # trailers, up to the blank line
        line = reader.readline()
        if not line:
            raise FramingError("stream ended inside the trailers")
        wire.append(line)
        if line in (b"\r\n", b"\n"):
            break
    return b"".join(wire), b"".join(body)
