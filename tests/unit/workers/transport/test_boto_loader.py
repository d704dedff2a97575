"""The channel's SQS clients read the SQS model through one loader, parsed once before the pool forks."""

from __future__ import annotations

import botocore.loaders
import pytest
from kombu import Producer

from workers.transport.boto_loader import shared_loader, warm


def test_once_warmed_a_new_client_needs_no_file(make_channel, monkeypatch):
    # GIVEN the SQS model read once (in a worker: its main process, before the pool forks)
    warm()

    # AND botocore unable to read any data file from now on (as if each read were what a pool process pays)
    def no_files(*args, **kwargs):
        raise AssertionError("a data file was read again")

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", no_files)

    # WHEN a channel makes its clients and publishes (its own session per client, as kombu does)
    channel, _ = make_channel()
    client = channel.sqs(queue="default")
    Producer(channel).publish({"n": 1}, routing_key="default", exchange="", serializer="json")

    # THEN the client read nothing from disk: it shares the loader, and it has the transport's timeouts
    assert client._loader is shared_loader()
    assert client.meta.config.read_timeout == channel.transport_options["client-config"]["read_timeout"]
    assert channel.basic_get("default", no_ack=True) is not None


def test_without_the_warm_up_a_file_read_is_what_fails(make_channel, monkeypatch):
    # GIVEN a loader that has read nothing yet, and no data file can be read
    monkeypatch.setattr("workers.transport.boto_loader._loader", None)
    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", lambda *a, **k: (_ for _ in ()).throw(OSError))

    # WHEN a channel makes a client THEN it needs the files: the test above proves the warm-up, not a cache elsewhere
    channel, _ = make_channel()
    with pytest.raises(Exception):  # noqa: B017 (botocore wraps the read error in several ways)
        channel.sqs(queue="default")
