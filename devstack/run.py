"""`make run`: moto, queues from the topology, migrations, then api, worker, beat, outbox relay; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from devstack import local_env, processes
from devstack.moto_server import start_moto_server, wait_until_up
from devstack.queues import create_queues
from workers.env import env_int, env_list
from workers.topology import load_topology

WORKER_READY = " ready."


def _pump(name: str, proc: subprocess.Popen, ready: threading.Event, marker: str | None) -> None:
    """Copy a child's output to ours with a name prefix; set `ready` when its marker shows."""
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        print(f"{name:>6} | {line}", flush=True)
        if marker and marker in line:
            ready.set()


def _api_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def main() -> int:
    started = time.monotonic()
    sqs_port = local_env.sqs_port()
    api_port = env_int("LOCAL_API_PORT", 8000)
    endpoint = f"http://127.0.0.1:{sqs_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    local_env.apply_local_defaults()
    os.environ.update(DJANGO_SETTINGS_MODULE="api.settings.local", PYTHONUNBUFFERED="1", SQS_ENDPOINT_URL=endpoint)
    python = sys.executable
    children: list[tuple[str, subprocess.Popen]] = []

    def stop_all() -> None:
        # Ctrl-C pressed again must not cut the clean-up short and leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for name, proc in reversed(children):
            code = processes.stop(proc, grace=15)
            print(f"{name:>6} | stopped (exit {code})", flush=True)

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for port, variable in ((sqs_port, "LOCAL_SQS_PORT"), (api_port, "LOCAL_API_PORT")):
            if not processes.port_is_free(port):
                print(f" stack | port {port} is in use: stop what holds it or set {variable}", flush=True)
                return 2
        moto = start_moto_server(sqs_port)
        children.append(("sqs", moto))
        wait_until_up(endpoint, moto)
        topology = load_topology()
        for key, url in create_queues(topology, endpoint_url=endpoint).items():
            print(f" stack | queue {key}: {url}", flush=True)
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], check=True)
        subprocess.run([python, "manage.py", "seed_subscribers", "--count", "25"], check=True)

        # The same start scripts the image runs (bin/start-*), with the venv first on PATH.
        bin_dir = processes.REPO_ROOT / "bin"
        commands = {
            "api": [str(bin_dir / "start-api")],
            "worker": [str(bin_dir / "start-worker")],
            "beat": [str(bin_dir / "start-beat")],
            "relay": [str(bin_dir / "start-outbox-relay")],  # publishes what the api stored but did not
        }
        env = {
            "PATH": processes.venv_path(),
            "API_BIND": f"127.0.0.1:{api_port}",
            "API_WORKERS": "2",
        }
        worker_ready = threading.Event()
        for name, argv in commands.items():
            proc = processes.start(argv, env=env, stdout=subprocess.PIPE)
            children.append((name, proc))
            marker = WORKER_READY if name == "worker" else None
            threading.Thread(target=_pump, args=(name, proc, worker_ready, marker), daemon=True).start()

        processes.wait_for(lambda: _api_up(api_url), timeout=60, what="the api")
        if not worker_ready.wait(timeout=60):
            raise TimeoutError("the worker did not report ready within 60 s")
        token = next(iter(env_list("API_TOKENS", [])), None)
        auth = f"-H 'Authorization: Bearer {token}' " if token else ""  # API_TOKENS=… make run: as production
        print(
            f"\n stack | ready in {time.monotonic() - started:.1f} s: api {api_url}, SQS {endpoint}\n"
            f" stack | try: curl -s -X POST {api_url}/api/jobs {auth}-H 'Content-Type: application/json' "
            f'-d \'{{"kind": "echo", "payload": {{"message": "hello"}}}}\'\n'
            f" stack |      curl -s {auth}{api_url}/api/jobs/1\n"
            f" stack | queues: {api_url}/ops/queues (staff: manage.py createsuperuser), manage.py queues --watch\n"
            f" stack | or, in another terminal: make demo.  Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f" stack | {name} exited with code {proc.returncode}; stopping the stack", flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\n stack | stopping", flush=True)
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
