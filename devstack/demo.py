"""`make demo` (with `make run` going): post jobs, show them finish, and show a failing one reach the DLQ."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

from core.env import env_int, env_list
from core.envelope import EnvelopeError, decode_sqs_body
from core.topology import load_topology
from devstack.local_env import apply_local_defaults, sqs_endpoint
from devstack.queues import sqs_client

TERMINAL = {"succeeded", "failed", "dead_lettered", "publish_failed", "refused", "cancelled", "expired"}
JOBS = [
    {"kind": "echo", "payload": {"message": "hello from the demo"}},
    {"kind": "echo", "payload": {"message": "to the high-priority queue"}, "queue": "high_priority"},
    {"kind": "sleep", "payload": {"seconds": 2}},
    {"kind": "flaky", "payload": {"failures": 1}},
    {"kind": "newsletter_fan_out", "payload": {"subject": "Fan-out issue", "page_size": 10}},
    {"kind": "newsletter_batching", "payload": {"subject": "Batched issue", "batch_size": 10}},
    {"kind": "fail", "payload": {"message": "the demo failure"}},
]


def _call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token := next(iter(env_list("API_TOKENS", [])), None):  # the api wants one (docker compose, production)
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _peek_dlq(endpoint: str, dlq_url: str) -> list[dict]:
    """Look at the DLQ without taking its messages (visibility 0 puts them straight back)."""
    response = sqs_client(endpoint).receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1
    )
    return response.get("Messages", [])


def main() -> int:
    apply_local_defaults()
    api = f"http://127.0.0.1:{env_int('LOCAL_API_PORT', 8000)}"
    endpoint = sqs_endpoint()
    try:
        _call(f"{api}/healthz")
    except OSError:
        print(f"demo: no api at {api}: start the stack with `make run` first", file=sys.stderr)
        return 2

    posted = []
    for job in JOBS:
        status, body = _call(f"{api}/api/jobs", job)
        print(f"POST {job['kind']:<20} -> {status} job {body.get('job_id')} task {body.get('task_id')}")
        if status != 202:
            print(f"demo: unexpected answer: {body}", file=sys.stderr)
            return 1
        posted.append(body)

    print("\nwaiting for the jobs to finish ...")
    deadline = time.monotonic() + 120
    states: dict[int, dict] = {}
    while time.monotonic() < deadline:
        states = {p["job_id"]: _call(f"{api}/api/jobs/{p['job_id']}")[1] for p in posted}
        if all(s["state"] in TERMINAL for s in states.values()):
            break
        time.sleep(1)
    for job in states.values():
        print(
            f"  job {job['id']:>4} {job['kind']:<20} {job['state']:<10} attempts={job['attempts']} "
            f"result={json.dumps(job['result'])} {job['error'][:60]}"
        )

    fail_job = states[posted[-1]["job_id"]]
    topology = load_topology(profile=os.environ["QUEUE_TOPOLOGY_PROFILE"])
    default = topology.queue("default")
    dlq_url = sqs_client(endpoint).get_queue_url(QueueName=default.dlq)["QueueUrl"]
    print(
        f"\nthe `fail` job exhausted {topology.retry.max_retries} retries; SQS now redelivers it every "
        f"{default.visibility_timeout} s until it has been received {default.max_receive_count} times, "
        f"then moves it to {default.dlq} ..."
    )
    deadline = time.monotonic() + 3 * default.visibility_timeout * default.max_receive_count + 60
    while time.monotonic() < deadline:
        for message in _peek_dlq(endpoint, dlq_url):
            try:
                envelope = decode_sqs_body(message["Body"])
            except EnvelopeError:
                continue
            if envelope.task_id == fail_job["task_id"]:
                print(
                    f"in {default.dlq}: task {envelope.task_name} id {envelope.task_id} "
                    f"retries={envelope.headers.get('retries')}"
                )
                print("demo: done")
                return 0
        print(f"  ... not in {default.dlq} yet", flush=True)
        time.sleep(5)
    print(f"demo: the failed task did not reach {default.dlq} in time", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
