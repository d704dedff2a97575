"""A proxy on 127.0.0.1 that injects faults a test switches at run time: TCP faults for any protocol, HTTP ones for SQS.

TCP modes (`http=False` or `http=True`):
    pass       forward
    refuse     new connections are refused (the listener is closed); a request or chunk on an existing
               connection resets it
    cut        drop every connection now and refuse new ones (the old TcpProxy.cut())
    blackhole  accept and read, never answer, forward nothing; connections that swallowed bytes are closed
               when the mode changes (their stream is no longer whole)
    latency    wait `latency_ms` before forwarding each request (`http=True`) or each client chunk
HTTP modes (`http=True` only; the proxy reads whole HTTP/1.1 requests and responses, keep-alive kept):
    http_5xx     answer `status` (500 or 503) with an SQS JSON error body, forward nothing
    throttle     answer as SQS does when throttling (400, RequestThrottled): botocore retries it as throttling
    answer_lost  forward the request (the endpoint applies it), read the answer, then close the client's
                 connection without a byte of it
With `http=True` a fault can be narrowed to some SQS actions (`actions=`) and to the next `count` matching
requests; after them the proxy is back in pass. Requests seen and faulted are counted per action.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from devstack.http_framing import FramingError, HttpMessage, SocketReader, read_message
from devstack.sqs_actions import request_action

TCP_MODES = frozenset({"pass", "refuse", "cut", "blackhole", "latency"})
HTTP_MODES = frozenset({"http_5xx", "throttle", "answer_lost"})
ERROR_STATUSES = {500: "InternalFailure", 503: "ServiceUnavailable"}
# botocore's standard and legacy retry modes both list RequestThrottled as a throttling code. The JSON protocol
# names it in __type and, because SQS is "awsQueryCompatible", also in x-amzn-query-error (code;fault).
THROTTLE_CODE = "RequestThrottled"


@dataclass
class _Fault:
    mode: str = "pass"
    actions: frozenset[str] | None = None  # None: every request
    remaining: int | None = None  # None: until set_mode() is called again
    latency: float = 0.0  # seconds
    status: int = 500

    def matches(self, action: str) -> bool:
        return self.mode != "pass" and (self.actions is None or action in self.actions)

    @property
    def closes_listener(self) -> bool:
        return self.mode in ("refuse", "cut") and self.actions is None and self.remaining is None


_PASS = _Fault()


class _Connection:
    """A client connection and its upstream; close() is safe from any thread and happens once."""

    def __init__(self, client: socket.socket):
        self.client = client
        self.upstream: socket.socket | None = None
        self.stale = False  # swallowed bytes in blackhole: closed when the mode changes
        self._closed = False
        self._lock = threading.Lock()

    def drop_upstream(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.close()

    def close(self, *, reset: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if reset:  # RST instead of FIN, as a crashed or overloaded endpoint does
            with contextlib.suppress(OSError):
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            with contextlib.suppress(OSError):  # wakes a thread blocked in recv() on it
                sock.shutdown(socket.SHUT_RD if reset and sock is self.client else socket.SHUT_RDWR)
            sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>; set_mode() switches the fault from any thread."""

    def __init__(self, target_port: int, *, port: int = 0, http: bool = False, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = port
        self.http = http
        self.connections = 0  # accepted so far
        self.seen: Counter[str] = Counter()  # requests by SQS action (http=True)
        self.faulted: Counter[str] = Counter()  # requests that got a fault, by SQS action
        self._fault = _PASS
        self._listener: socket.socket | None = None
        self._conns: set[_Connection] = set()
        self._stopped = True  # until start()
        self._lock = threading.Lock()

    # --- control (test thread) ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        with self._lock:
            return self._fault.mode

    def start(self) -> FaultProxy:
        with self._lock:
            self._stopped = False
            self._listen()
        return self

    def __enter__(self) -> FaultProxy:
        return self if self._listener is not None else self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def set_mode(
        self,
        mode: str,
        *,
        actions: Iterable[str] | str | None = None,
        count: int | None = None,
        latency_ms: float = 0,
        status: int = 500,
    ) -> None:
        """Switch to `mode` now; `actions`/`count` narrow it to the next `count` requests of those SQS actions."""
        if mode not in TCP_MODES | HTTP_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {sorted(TCP_MODES | HTTP_MODES)}")
        if not self.http and (mode in HTTP_MODES or actions is not None or count is not None):
            raise ValueError(f"mode {mode!r} with actions/count needs FaultProxy(..., http=True)")
        if mode == "cut" and (actions is not None or count is not None):
            raise ValueError("cut drops every connection; to fault some requests use refuse with actions/count")
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if mode == "latency" and latency_ms <= 0:
            raise ValueError("latency needs latency_ms > 0")
        if mode == "http_5xx" and status not in ERROR_STATUSES:
            raise ValueError(f"http_5xx status must be one of {sorted(ERROR_STATUSES)}, got {status}")
        if isinstance(actions, str):
            actions = [actions]
        fault = _Fault(
            mode,
            frozenset(actions) if actions is not None else None,
            count,
            latency_ms / 1000,
            status,
        )
        with self._lock:
            self._fault = fault if mode != "pass" else _PASS
            stale = [conn for conn in self._conns if conn.stale]
            dropped = list(self._conns) if mode == "cut" else []
            if mode == "cut":
                self._conns.clear()
            if self._fault.closes_listener:
                self._unlisten()
            elif not self._stopped:
                self._listen()
        for conn in {*stale, *dropped}:
            conn.close()

    def cut(self) -> None:
        self.set_mode("cut")

    def restore(self) -> None:
        self.set_mode("pass")
        self.start()  # after stop(), too (TcpProxy's restore() started it again)

    def stop(self) -> None:
        """Close the listener and every connection, for good (start() opens it again)."""
        with self._lock:
            self._stopped = True
            self._fault = _PASS
            self._unlisten()
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            conn.close()

    def snapshot(self) -> dict[str, Counter[str]]:
        with self._lock:
            return {"seen": Counter(self.seen), "faulted": Counter(self.faulted)}

    def reset_counts(self) -> None:
        with self._lock:
            self.seen.clear()
            self.faulted.clear()

    # --- listener (callers hold self._lock) -----------------------------------------------------------------

    def _listen(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # the same port again after refuse/cut
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name=f"fault-proxy-{self.port}", daemon=True).start()

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    # --- data path (one thread per connection and direction) ------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by refuse, cut or stop
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(client)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    return
                self._conns.add(conn)
                self.connections += 1
            handler = self._serve_http if self.http else self._serve_tcp
            threading.Thread(target=self._run, args=(handler, conn), daemon=True).start()

    def _run(self, handler, conn: _Connection) -> None:
        try:
            handler(conn)
        except (OSError, FramingError):
            pass  # the client, the endpoint or a mode change closed the connection
        finally:
            conn.close()
            with self._lock:
                self._conns.discard(conn)

    def _current(self) -> _Fault:
        with self._lock:
            return self._fault

    def _connect_upstream(self, conn: _Connection) -> socket.socket:
        if conn.upstream is None:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.upstream = upstream
        return conn.upstream

    def _serve_tcp(self, conn: _Connection) -> None:
        if self._current().mode == "blackhole":
            self._swallow(conn)
            return
        upstream = self._connect_upstream(conn)
        back = threading.Thread(target=self._run, args=(lambda c: self._pipe(c, upstream, c.client, False), conn))
        back.daemon = True
        back.start()
        self._pipe(conn, conn.client, upstream, True)

    def _pipe(self, conn: _Connection, src: socket.socket, dst: socket.socket, to_upstream: bool) -> None:
        while data := src.recv(65536):
            fault = self._current()
            if fault.mode == "blackhole":
                if not self._mark_stale(conn):
                    return  # the blackhole ended meanwhile: this stream lost bytes, close it
                continue
            if fault.mode in ("refuse", "cut"):
                conn.close(reset=True)
                return
            if fault.mode == "latency" and to_upstream:
                time.sleep(fault.latency)
            dst.sendall(data)

    def _serve_http(self, conn: _Connection) -> None:
        reader = SocketReader(conn.client)
        upstream_reader: SocketReader | None = None
        while (request := read_message(reader, continue_to=conn.client)) is not None:
            method, path, _ = request.start_line.split(" ", 2)
            action = request_action(request.headers, request.body, path)
            fault = self._take(action)
            if fault.mode == "blackhole":
                self._swallow(conn)
                return
            if fault.mode in ("refuse", "cut"):
                conn.close(reset=True)
                return
            if fault.mode == "http_5xx":
                conn.client.sendall(_error_response(fault.status, ERROR_STATUSES[fault.status], "Receiver"))
                continue
            if fault.mode == "throttle":
                conn.client.sendall(_error_response(400, THROTTLE_CODE, "Sender", "Request is throttled."))
                continue
            if fault.mode == "latency":
                time.sleep(fault.latency)
            upstream = self._connect_upstream(conn)
            if upstream_reader is None:
                upstream_reader = SocketReader(upstream)
            upstream.sendall(request.raw)
            response = _read_response(upstream_reader, method)
            if fault.mode == "answer_lost":
                return  # applied upstream; the client gets a closed connection and no answer
            current = self._current()
            if current.mode == "blackhole" and current.matches(action):
                self._swallow(conn)  # blackholed while the request was in flight: the answer is swallowed
                return
            if request.ends_connection:
                conn.client.sendall(response.raw)
                return
            # The client keeps its connection even when the endpoint closes its own (moto's werkzeug answers
            # "Connection: close" to every request): as with SQS, boto3's pooled connection stays in use.
            conn.client.sendall(response.kept_alive())
            if response.ends_connection:
                conn.drop_upstream()
                upstream_reader = None

    def _mark_stale(self, conn: _Connection) -> bool:
        """Mark a connection that swallowed bytes; False if the blackhole already ended (then close it)."""
        with self._lock:
            conn.stale = True
            return self._fault.mode == "blackhole"

    def _swallow(self, conn: _Connection) -> None:
        """Read and discard until the client gives up or the blackhole ends (set_mode closes stale connections)."""
        if self._mark_stale(conn):
            _drain(conn.client)

    def _take(self, action: str) -> _Fault:
        """The fault this request gets (spending one of `count`), and count it."""
        with self._lock:
            self.seen[action] += 1
            fault = self._fault
            if not fault.matches(action):
                return _PASS
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._fault = _PASS
            self.faulted[action] += 1
            return fault


def _read_response(reader: SocketReader, method: str) -> HttpMessage:
    while True:
        response = read_message(reader, request_method=method)
        if response is None:
            raise FramingError("the endpoint closed the connection without an answer")
        if response.status >= 200:
            return response  # 1xx interim answers are skipped


def _drain(sock: socket.socket) -> None:
    """Read and discard until the peer or a mode change closes the connection."""
    while sock.recv(65536):
        pass


def _error_response(status: int, code: str, fault: str, message: str | None = None) -> bytes:
    body = f'{{"__type":"com.amazonaws.sqs#{code}","message":"{message or code}"}}'.encode()
    reason = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/x-amz-json-1.0\r\n"
        f"x-amzn-RequestId: {uuid.uuid4()}\r\n"
        f"x-amzn-query-error: {code};{fault}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
