"""Unit tests of the visibility heartbeat (workers/visibility.py): its client, and messages the worker is done with."""

from __future__ import annotations

from types import SimpleNamespace

from kombu import Producer

from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology
from workers.visibility import VisibilityHeartbeat


def _client_config_numbers(config) -> dict:
    return {
        "connect_timeout": config.connect_timeout,
        "read_timeout": config.read_timeout,
        "retries": config.retries,
    }


def test_the_heartbeat_client_uses_the_projects_retries_and_gives_up_within_one_interval(settings):
    # GIVEN the worker's bootstep that runs the heartbeat, and the client kombu builds from transport_options
    from kombu import Connection

    from workers.bootsteps import VisibilityHeartbeatStep

    with Connection(
        settings.CELERY_BROKER_URL,
        transport=settings.CELERY_BROKER_TRANSPORT,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    ) as conn:
        kombus = conn.default_channel.sqs(queue="default")
    step = VisibilityHeartbeatStep.__new__(VisibilityHeartbeatStep)
    step.heartbeat = None

    # WHEN it builds its SQS client
    step.start(parent=None)
    try:
        client = step.heartbeat.sqs
        # THEN attempts are the project's, not botocore's defaults (5 attempts), and each call gives up within one
        # heartbeat interval (kombu's clients wait 30 s: one hung extension must not outlast the visibility timeout)
        ours, theirs = _client_config_numbers(client._client_config), _client_config_numbers(kombus._client_config)
        interval = step.heartbeat.interval
        assert interval > 0
        assert ours["retries"] == theirs["retries"]
        assert ours["read_timeout"] == interval < theirs["read_timeout"]
        assert ours["connect_timeout"] == min(interval, theirs["connect_timeout"])
        assert client.meta.endpoint_url.rstrip("/") == settings.SQS_ENDPOINT_URL.rstrip("/")
    finally:
        step.stop(parent=None)


def _visible(client, url: str) -> int:
    return len(client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []))


def test_a_tick_that_read_a_message_just_before_it_was_handed_back_leaves_it_visible(make_channel):
    # GIVEN a worker holding one message of a heartbeat queue (production topology: `default` heartbeats)
    topology = load_topology(DEFAULT_TOPOLOGY_PATH, profile="")
    assert topology.queue("default").visibility_heartbeat_seconds
    channel, _ = make_channel(prefetch=1)
    Producer(channel).publish({"n": 1}, routing_key="default", exchange="", serializer="json")
    message = channel.basic_get("default", no_ack=False)
    url = message.delivery_info["sqs_queue"]

    # AND a heartbeat tick that reads the held set, and right after that read the worker hands the message
    # back (a lost pool child, a requeue, shutdown: visibility 0)
    def held_then_handed_back():
        read = [SimpleNamespace(message=SimpleNamespace(delivery_info=dict(message.delivery_info)))]
        message.requeue()
        return read

    heartbeat = VisibilityHeartbeat(sqs=channel.sqs(queue="default"), topology=topology, held=held_then_handed_back)

    # WHEN the tick goes on with what it read
    heartbeat.tick()

    # THEN the message stays visible: nothing re-hid it for a whole visibility timeout
    assert heartbeat.extended == 0
    assert _visible(make_channel.client, url) == 1


def test_a_tick_never_extends_a_message_acked_meanwhile(make_channel):
    # GIVEN a held message the tick has read, acked right after (its delete still waits for its batch)
    topology = load_topology(DEFAULT_TOPOLOGY_PATH, profile="")
    channel, _ = make_channel(prefetch=1, delete_batch_seconds=30)
    Producer(channel).publish({"n": 1}, routing_key="default", exchange="", serializer="json")
    message = channel.basic_get("default", no_ack=False)

    def held_then_acked():
        read = [SimpleNamespace(message=SimpleNamespace(delivery_info=dict(message.delivery_info)))]
        message.ack()
        return read

    heartbeat = VisibilityHeartbeat(sqs=channel.sqs(queue="default"), topology=topology, held=held_then_acked)

    # WHEN the tick goes on
    heartbeat.tick()

    # THEN it asked SQS for nothing
    assert heartbeat.extended == 0
    channel.close()


def test_a_hand_back_during_an_extension_waits_for_its_answer():
    # GIVEN a tick whose ChangeMessageVisibilityBatch is in flight (the endpoint answers slowly)
    import threading

    from workers.finished_messages import FinishedMessages

    topology = load_topology(DEFAULT_TOPOLOGY_PATH, profile="")
    events: list[str] = []
    in_call, release = threading.Event(), threading.Event()

    class SlowSqs:
        def change_message_visibility_batch(self, *, QueueUrl, Entries):  # noqa: N803 (boto3's names)
            in_call.set()
            release.wait(5)
            events.append("extended")
            return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    info = {"routing_key": "default", "sqs_message": {"ReceiptHandle": "h1"}, "sqs_queue": "https://sqs/q"}
    finished = FinishedMessages()
    heartbeat = VisibilityHeartbeat(
        sqs=SlowSqs(),
        topology=topology,
        held=lambda: [SimpleNamespace(message=SimpleNamespace(delivery_info=info))],
        finished=finished,
    )
    tick = threading.Thread(target=heartbeat.tick)
    tick.start()
    assert in_call.wait(5)

    # WHEN the worker hands the message back meanwhile (it marks the handle before its visibility-0 call)
    def hand_back():
        finished.finish("h1", after_extensions=True)
        events.append("handed back")

    back = threading.Thread(target=hand_back)
    back.start()
    back.join(0.2)
    release.set()
    tick.join(5)
    back.join(5)

    # THEN the hand-back's own call comes after the extension's answer: visibility 0 is the last word
    assert events == ["extended", "handed back"]
    # AND the next tick leaves the message alone
    heartbeat.tick()
    assert events == ["extended", "handed back"]


def test_an_ack_during_an_extension_does_not_wait_for_it():
    # GIVEN a tick whose ChangeMessageVisibilityBatch hangs (a hung endpoint)
    import threading

    from workers.finished_messages import FinishedMessages

    topology = load_topology(DEFAULT_TOPOLOGY_PATH, profile="")
    in_call, release = threading.Event(), threading.Event()

    class HungSqs:
        def change_message_visibility_batch(self, *, QueueUrl, Entries):  # noqa: N803 (boto3's names)
            in_call.set()
            release.wait(5)
            return {"Successful": []}

    info = {"routing_key": "default", "sqs_message": {"ReceiptHandle": "h1"}, "sqs_queue": "https://sqs/q"}
    finished = FinishedMessages()
    heartbeat = VisibilityHeartbeat(
        sqs=HungSqs(),
        topology=topology,
        held=lambda: [SimpleNamespace(message=SimpleNamespace(delivery_info=info))],
        finished=finished,
    )
    tick = threading.Thread(target=heartbeat.tick)
    tick.start()
    assert in_call.wait(5)

    # WHEN the event loop acks another message meanwhile
    acked = threading.Thread(target=finished.finish, args=("h2",))
    acked.start()
    acked.join(1)

    # THEN the ack was recorded at once: the event loop never waits on a heartbeat call
    assert not acked.is_alive() and "h2" in finished
    release.set()
    tick.join(5)
