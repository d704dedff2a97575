"""moto's SQS scans cut to one per call, as SQS's cost does not grow with a queue's depth; every answer unchanged.

moto 5.2.5 counts a queue's messages (three passes over all of them, reading the clock for each) whenever it
builds the queue's attributes, and builds them far more often than asked:
- ReceiveMessage checks each message it returns against the retention period by building all attributes three
  times over: a receive of 10 from a queue 300 deep cost 180 ms in-process, a receive of 1 cost 25 ms;
- GetQueueAttributes builds them three times for each name asked for (nine times for the three counts).
So on the emulator a batch receive paid ten times what a single receive did, per call: the DLQ replay's
receives of 10 hid its 10x fewer requests (issue L item 4). Both now read what they need once.
"""

from __future__ import annotations

from typing import Any

from moto.core.utils import unix_time
from moto.sqs.exceptions import InvalidAttributeName
from moto.sqs.models import Message, SQSBackend


def install() -> None:
    """Patch moto's SQS backend in this process; idempotent."""
    if getattr(SQSBackend.get_queue_attributes, "_one_scan", False):
        return
    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period
    SQSBackend.get_queue_attributes = get_queue_attributes


def is_message_valid_based_on_retention_period(self: SQSBackend, queue_name: str, message: Message) -> bool:
    """moto's own rule (kept until sent + retention period), reading the one attribute it needs."""
    retention_period = int(self.get_queue(queue_name).message_retention_period)
    return retention_period + message.sent_timestamp / 1000 > unix_time()  # type: ignore[operator]


def get_queue_attributes(self: SQSBackend, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
    """moto's own answer, validation included, with the queue's attributes built once."""
    queue = self.get_queue(queue_name)
    if not attribute_names:
        return {}
    valid_names = ["All"] + queue.BASE_ATTRIBUTES + queue.FIFO_ATTRIBUTES + queue.KMS_ATTRIBUTES
    invalid_name = next((name for name in attribute_names if name not in valid_names), None)
    if invalid_name or invalid_name == "":
        raise InvalidAttributeName(invalid_name)
    attributes = queue.attributes
    if "All" in attribute_names:
        return attributes
    return {name: attributes[name] for name in attribute_names if attributes.get(name) is not None}


get_queue_attributes._one_scan = True  # type: ignore[attr-defined]
