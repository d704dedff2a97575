"""The fault proxy: each mode, seen by boto3 through a real moto server, and by a raw TCP client for TCP modes."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker

from devstack import moto_server, processes
from devstack.fault_proxy import FaultProxy
from devstack.tcp_proxy import TcpProxy

REGION = "us-east-1"
NO_RETRIES = Config(connect_timeout=1, read_timeout=1, retries={"mode": "standard", "total_max_attempts": 1})
# Through the proxy: no retries (they would hide the fault), but time enough for a loaded machine's moto.
PROXIED = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "total_max_attempts": 1})
# Set-up and inspection straight against moto: generous, so a loaded machine cannot fail a test before its fault.
DIRECT = Config(connect_timeout=10, read_timeout=30, retries={"mode": "standard", "total_max_attempts": 3})


@pytest.fixture(scope="module")
def moto_url():
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = moto_server.start_moto_server(port)
    try:
        moto_server.wait_until_up(url, proc)
        yield url
    finally:
        processes.stop(proc, grace=5)


@pytest.fixture
def proxy(moto_url):
    with FaultProxy(int(moto_url.rsplit(":", 1)[1]), http=True).start() as proxy:
        yield proxy


def _sqs(url: str, config: Config = PROXIED):
    return boto3.client(
        "sqs", endpoint_url=url, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test",
        config=config,
    )  # fmt: skip


@pytest.fixture
def queue_url(moto_url):
    return _sqs(moto_url, DIRECT).create_queue(QueueName=f"fault-{uuid.uuid4().hex[:8]}")["QueueUrl"]


def _bodies(moto_url: str, queue_url: str) -> list[str]:
    """What the queue holds, read straight from moto (not through the proxy)."""
    got = _sqs(moto_url, DIRECT).receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [m["Body"] for m in got.get("Messages", [])]


def test_pass_forwards_over_one_kept_alive_connection_and_counts_by_action(proxy, moto_url, queue_url):
    # GIVEN a boto3 client that talks to moto through the proxy
    sqs = _sqs(proxy.url)
    # WHEN it sends twice and receives once
    sqs.send_message(QueueUrl=queue_url, MessageBody="a")
    sqs.send_message(QueueUrl=queue_url, MessageBody="b")
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    # THEN everything went through, on one reused connection, counted by action and never faulted
    assert sorted(m["Body"] for m in got["Messages"]) == ["a", "b"]
    assert proxy.connections == 1
    assert proxy.snapshot() == {"seen": {"SendMessage": 2, "ReceiveMessage": 1}, "faulted": {}}


def test_refuse_refuses_new_connections_and_resets_kept_ones_until_pass(proxy, queue_url):
    # GIVEN a client with a kept-alive connection through the proxy
    sqs = _sqs(proxy.url)
    sqs.get_queue_attributes(QueueUrl=queue_url)
    # WHEN the proxy refuses
    proxy.set_mode("refuse")
    # THEN the kept connection is reset at its next request, and a new connection is refused
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        sqs.get_queue_attributes(QueueUrl=queue_url)
    with pytest.raises(EndpointConnectionError):
        _sqs(proxy.url).get_queue_attributes(QueueUrl=queue_url)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", proxy.port), timeout=1):
        pass
    # WHEN it passes again, on the same port
    proxy.set_mode("pass")
    # THEN the same client works again
    assert sqs.get_queue_attributes(QueueUrl=queue_url)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_blackhole_makes_the_client_time_out_and_pass_ends_it(proxy, queue_url):
    # GIVEN a client with a 1 s read timeout and no retries
    sqs, impatient = _sqs(proxy.url), _sqs(proxy.url, NO_RETRIES)
    sqs.get_queue_attributes(QueueUrl=queue_url)
    # WHEN the proxy black-holes the endpoint
    proxy.set_mode("blackhole")
    # THEN the connection is accepted, the request read, and no answer comes
    with pytest.raises(ReadTimeoutError):
        impatient.send_message(QueueUrl=queue_url, MessageBody="lost in the hole")
    # WHEN it passes again
    proxy.set_mode("pass")
    # THEN the client works again and nothing swallowed reached the queue
    sqs.send_message(QueueUrl=queue_url, MessageBody="after")
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)["Messages"]] == ["after"]
    assert proxy.snapshot()["faulted"] == {"SendMessage": 1}


def test_latency_delays_each_request_by_at_least_the_delay(proxy, queue_url):
    # GIVEN a proxy that adds 300 ms per request
    sqs = _sqs(proxy.url)
    proxy.set_mode("latency", latency_ms=300)
    # WHEN a client makes two requests
    started = time.monotonic()
    sqs.get_queue_attributes(QueueUrl=queue_url)
    sqs.get_queue_attributes(QueueUrl=queue_url)
    # THEN they took at least twice the delay (no upper bound: the machine is shared)
    assert time.monotonic() - started >= 0.6


@pytest.mark.parametrize("status", [500, 503])
def test_http_5xx_answers_an_sqs_json_error_without_forwarding(proxy, moto_url, queue_url, status):
    # GIVEN a proxy answering 5xx
    proxy.set_mode("http_5xx", status=status)
    # WHEN a client sends
    with pytest.raises(ClientError) as raised:
        _sqs(proxy.url).send_message(QueueUrl=queue_url, MessageBody="never forwarded")
    # THEN botocore sees the status and the error code, and the endpoint never got the message
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert raised.value.response["Error"]["Code"] == {500: "InternalFailure", 503: "ServiceUnavailable"}[status]
    assert _bodies(moto_url, queue_url) == []


def test_throttle_is_the_error_botocore_classifies_and_retries_as_throttling(proxy, moto_url, queue_url):
    # GIVEN a proxy that throttles
    proxy.set_mode("throttle")
    # WHEN a client without retries sends
    with pytest.raises(ClientError) as raised:
        _sqs(proxy.url).send_message(QueueUrl=queue_url, MessageBody="throttled")
    # THEN botocore parses SQS's throttling code (modeled: client.exceptions.RequestThrottled) and its standard
    # retry mode counts it as throttling
    assert raised.value.response["Error"]["Code"] == "RequestThrottled"
    assert isinstance(raised.value, _sqs(proxy.url).exceptions.RequestThrottled)
    context = RetryContext(attempt_number=1, parsed_response=raised.value.response)
    assert ThrottledRetryableChecker().is_retryable(context)

    # WHEN only the next 2 requests are throttled and the client retries (standard mode, 3 attempts)
    proxy.reset_counts()
    proxy.set_mode("throttle", count=2)
    retrying = _sqs(proxy.url, Config(retries={"mode": "standard", "total_max_attempts": 3}))
    retrying.send_message(QueueUrl=queue_url, MessageBody="third time")
    # THEN the third attempt went through
    assert proxy.snapshot() == {"seen": {"SendMessage": 3}, "faulted": {"SendMessage": 2}}
    assert _bodies(moto_url, queue_url) == ["third time"]


def test_answer_lost_applies_the_request_but_the_client_gets_no_answer(proxy, moto_url, queue_url):
    # GIVEN a proxy that loses answers
    proxy.set_mode("answer_lost")
    # WHEN a client sends
    with pytest.raises(ConnectionClosedError):
        _sqs(proxy.url).send_message(QueueUrl=queue_url, MessageBody="applied")
    # THEN the client saw a failure, yet the message is in the queue
    assert _bodies(moto_url, queue_url) == ["applied"]


def test_actions_and_count_fault_only_the_next_n_requests_of_that_action(proxy, queue_url):
    # GIVEN a proxy failing the next 2 ReceiveMessage calls only
    sqs = _sqs(proxy.url)
    proxy.set_mode("http_5xx", actions={"ReceiveMessage"}, count=2)
    # WHEN a client sends, then receives three times
    sqs.send_message(QueueUrl=queue_url, MessageBody="m")
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(len(sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages", [])))
        except ClientError as exc:
            outcomes.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    # THEN only the first two receives failed, the send passed, and the proxy is back in pass
    assert outcomes == [500, 500, 1]
    assert proxy.snapshot() == {"seen": {"SendMessage": 1, "ReceiveMessage": 3}, "faulted": {"ReceiveMessage": 2}}
    assert proxy.mode == "pass"


def test_refuse_narrowed_to_one_action_resets_only_those_requests(proxy, moto_url, queue_url):
    # GIVEN a proxy resetting DeleteMessageBatch only, once
    sqs = _sqs(proxy.url)
    sqs.send_message(QueueUrl=queue_url, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)["Messages"][0]["ReceiptHandle"]
    proxy.set_mode("refuse", actions="DeleteMessageBatch", count=1)
    # WHEN the client deletes twice
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[{"Id": "1", "ReceiptHandle": handle}])
    deleted = sqs.delete_message_batch(QueueUrl=queue_url, Entries=[{"Id": "1", "ReceiptHandle": handle}])
    # THEN the first was reset, the second went through on a new connection
    assert [e["Id"] for e in deleted["Successful"]] == ["1"]
    assert proxy.snapshot()["faulted"] == {"DeleteMessageBatch": 1}


def test_a_chunked_answer_is_forwarded_whole_on_a_kept_connection():
    # GIVEN an HTTP server that answers with chunked encoding, behind the proxy
    class Chunked(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Chunked)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with FaultProxy(server.server_address[1], http=True).start() as proxy:
            # WHEN a client GETs twice
            bodies = [urllib.request.urlopen(proxy.url, timeout=5).read() for _ in range(2)]
            # THEN it gets the whole body both times
            assert bodies == [b"hello chunked world"] * 2
            assert proxy.snapshot()["seen"] == {"other": 2}
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def echo_port():
    """A TCP echo server: a stand-in for any non-HTTP protocol (PostgreSQL's, say)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def echo(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def _echo(port: int, data: bytes, timeout: float = 2) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def test_tcp_modes_work_for_a_protocol_that_is_not_http(echo_port):
    with FaultProxy(echo_port).start() as proxy:
        # GIVEN a TCP proxy in front of an echo server: it passes
        assert _echo(proxy.port, b"ping") == b"ping"
        # WHEN it adds latency THEN a round trip takes at least that long
        proxy.set_mode("latency", latency_ms=200)
        started = time.monotonic()
        assert _echo(proxy.port, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.2
        # WHEN it black-holes THEN the connection is accepted but nothing comes back
        proxy.set_mode("blackhole")
        with pytest.raises(TimeoutError):
            _echo(proxy.port, b"void", timeout=0.5)
        # WHEN it refuses THEN connecting fails
        proxy.set_mode("refuse")
        with pytest.raises(ConnectionRefusedError):
            _echo(proxy.port, b"no")
        # WHEN it passes again THEN the same port echoes again
        proxy.set_mode("pass")
        assert _echo(proxy.port, b"back") == b"back"
        # AND the HTTP-only modes are refused with a clear error
        with pytest.raises(ValueError, match="http=True"):
            proxy.set_mode("throttle")


def test_tcp_proxy_keeps_its_cut_and_restore(echo_port):
    # GIVEN the old TcpProxy name with a live connection
    proxy = TcpProxy(echo_port).start()
    try:
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        live.sendall(b"x")
        assert live.recv(10) == b"x"
        # WHEN it is cut THEN the live connection is dropped and new ones are refused
        proxy.cut()
        assert live.recv(10) == b""
        with pytest.raises(ConnectionRefusedError):
            _echo(proxy.port, b"no")
        # WHEN it is restored THEN the same port forwards again
        proxy.restore()
        assert _echo(proxy.port, b"yes") == b"yes"
    finally:
        proxy.stop()
