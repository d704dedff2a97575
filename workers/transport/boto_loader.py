"""One botocore data loader for every SQS client the channel makes in a worker, read once before the pool forks.

kombu makes each client in a session of its own (a client per queue, and in each pool process one to publish
retries and fan-outs), and each new session reads and parses the SQS model and the endpoint data again: 64 ms of
CPU a client, 8 with the loader shared. In a pool process that cost fell inside the first publishing task's soft
time limit (2 s on the test topology: exceeded on a loaded machine)."""

from __future__ import annotations

import botocore.loaders
import botocore.session

_loader: botocore.loaders.Loader | None = None


def shared_loader() -> botocore.loaders.Loader:
    global _loader
    if _loader is None:
        _loader = botocore.loaders.create_loader()
    return _loader


def new_session() -> botocore.session.Session:
    """A botocore session of its own (credentials, region) that reads models through the shared loader."""
    session = botocore.session.get_session()
    session.register_component("data_loader", shared_loader())
    return session


def warm(service: str = "sqs") -> None:
    """Read what a client of `service` needs into the shared loader, in the worker's main process before its pool
    forks: each pool process starts with it in memory. No request is sent."""
    new_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="warm",
        aws_secret_access_key="warm",  # noqa: S106 (no request is made)
    )
