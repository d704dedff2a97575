"""`make run`: moto, queues from the topology, migrations, then api, worker, beat, outbox relay; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request

from core.env import env_int, env_list, env_str
from core.topology import load_topology
from devstack import local_env, processes, stack_file
from devstack.run_output import RunOutput
from devstack.stack import LocalStack

WORKER_READY = " ready."
# Our own health polls carry this User-Agent, so their lines in gunicorn's access log are left out.
PROBE_AGENT = "devstack-run-probe"
# gunicorn workers of the local api: more than one, as in production, so a login must hold across processes
# (the secret key in var/, devstack/local_secret.py); tests/integration/test_ops_login_browser.py starts the same.
API_WORKERS = 2


def _api_up(url: str) -> bool:
    request = urllib.request.Request(f"{url}/healthz", headers={"User-Agent": PROBE_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt


def _install_seconds(now: float) -> float | None:
    """Seconds since the Makefile started `bin/bootstrap` (RUN_STARTED_AT, epoch seconds), if it says."""
    try:
        return now - float(os.environ["RUN_STARTED_AT"])
    except (KeyError, ValueError):
        return None


def main() -> int:
    started = time.monotonic()
    out = RunOutput()
    if (install := _install_seconds(time.time())) is not None:
        out.say(f"run: install ... {install:.1f} s")
    sqs_port = local_env.sqs_port()
    api_port = env_int("LOCAL_API_PORT", 8000)
    endpoint = f"http://127.0.0.1:{sqs_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    # This stack's own endpoint and database, set before the defaults so another stack's var/local-stack.json
    # is never taken for ours.
    database_url = env_str("DATABASE_URL", None)
    sqlite_path = local_env.REPO_ROOT / "var" / "db.sqlite3"
    os.environ.update(SQS_ENDPOINT_URL=endpoint, CLOUDWATCH_ENDPOINT_URL=endpoint)
    if not database_url:
        os.environ.setdefault("SQLITE_PATH", str(sqlite_path))
        sqlite_path = os.environ["SQLITE_PATH"]
    local_env.apply_local_defaults()
    os.environ.update(DJANGO_SETTINGS_MODULE="api.settings.local", PYTHONUNBUFFERED="1")
    var_dir = local_env.var_dir()
    stack = LocalStack(var_dir / "run-logs", grace=15)
    stack.workdir.mkdir(parents=True, exist_ok=True)
    for old in stack.workdir.glob("*.log"):  # the previous run's
        old.unlink()

    def echo(name: str):
        def say(line: str) -> None:
            if PROBE_AGENT not in line:  # our own health polls
                out.say(f"{name:>6} | {line}")

        return say

    def stop_all() -> None:
        # Ctrl-C pressed again must not cut the clean-up short and leave children behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack_file.remove(var_dir)
        for handle, code in stack.stop_all():
            out.say(f"{handle.name:>6} | stopped (exit {code})")
        out.close()

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for port, variable in ((sqs_port, "LOCAL_SQS_PORT"), (api_port, "LOCAL_API_PORT")):
            if not processes.port_is_free(port):
                out.say(f"run: port {port} is in use: stop what holds it or set {variable}")
                return 2
        with out.step(f"emulator {endpoint}"):
            stack.start_emulator(sqs_port)
        with out.step("queues"):
            for key, url in stack.create_queues(load_topology()).items():
                out.say(f" stack | queue {key}: {url}")
        path = stack_file.write(
            var_dir, sqs_endpoint=endpoint, api_url=api_url, database_url=database_url, sqlite_path=sqlite_path
        )
        out.say(f" stack | endpoints for manage.py in other shells: {path}; logs in {stack.workdir}")
        with out.step(f"migrate {database_url or sqlite_path}"):
            stack.migrate([sys.executable, "-m", "devstack.stack_database"], echo=echo("db"))

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
            "API_WORKERS": str(API_WORKERS),
        }
        started_at: dict[str, float] = {}
        handles = {}
        for name, argv in commands.items():
            started_at[name] = time.monotonic()
            with out.step(f"{name} started"):
                handles[name] = stack.start(name, argv, env=env, echo=echo(name))

        # Each timed from its own start: they start up side by side.
        with out.step(f"api answering {api_url}", since=started_at["api"]):
            processes.wait_for(lambda: _api_up(api_url), timeout=120, interval=0.3, what="the api")
        with out.step("worker ready", since=started_at["worker"]):
            left = max(1.0, 120 - (time.monotonic() - started_at["worker"]))
            stack.wait_ready(handles["worker"], WORKER_READY, timeout=left, interval=0.2)
        token = next(iter(env_list("API_TOKENS", [])), None)
        auth = f"-H 'Authorization: Bearer {token}' " if token else ""  # API_TOKENS=… make run: as production
        out.say(
            f"\nrun: ready in {time.monotonic() - started:.1f} s: api {api_url}, SQS {endpoint}\n"
            f" stack | try: curl -s -X POST {api_url}/api/jobs {auth}-H 'Content-Type: application/json' "
            f'-d \'{{"kind": "echo", "payload": {{"message": "hello"}}}}\'\n'
            f" stack |      curl -s {auth}{api_url}/api/jobs/1\n"
            f" stack | queues: {api_url}/ops/queues (staff: manage.py createsuperuser), manage.py queues --watch\n"
            f" stack | or, in another terminal: make demo.  Ctrl-C stops everything.\n"
        )
        while True:
            for handle in stack.started:
                if not handle.alive():
                    out.say(f"run: {handle.name} exited with code {handle.proc.returncode}; stopping the stack")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        out.say("\nrun: stopping")
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
