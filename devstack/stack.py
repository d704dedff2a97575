"""One private local stack as a context manager: the SQS emulator, the topology's queues, the database, and
processes started and stopped by PID with their logs and readiness. `make run`, the soak, the benchmarks and the
integration fixtures all start their stacks with it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devstack import processes
from devstack.moto_server import reset, wait_until_up
from devstack.processes import REPO_ROOT
from devstack.sqlite_template import migrated_copy, schema_key

Echo = Callable[[str], None]


@dataclass
class Proc:
    """A process the stack started, its log, and how to read it."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)
    stopped: bool = False  # stopped by the harness already: a second stop does nothing

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


def _copy_lines(proc: subprocess.Popen, log_path: Path, echo: Echo) -> None:
    """A child's output into its log file, and each line to `echo` too (`make run` shows them all)."""
    assert proc.stdout is not None
    with log_path.open("ab") as log:
        for raw in proc.stdout:
            log.write(raw)
            log.flush()
            echo(raw.decode(errors="replace").rstrip())


class Processes:
    """Processes each the leader of its own process group, logging under `workdir`; stop_all() stops every one
    still running by PID, the last started first. `first` is the signal a stop sends first: SIGTERM and `grace`
    seconds for a clean shutdown, SIGKILL where the shutdown is not what is looked at (seconds saved each)."""

    def __init__(self, workdir: Path, *, env: Mapping[str, str] | None = None, grace: float = 10.0, first=None):
        self.workdir = workdir
        self.env = dict(env or {})
        self.grace = grace
        self.first = signal.SIGTERM if first is None else first
        self.started: list[Proc] = []

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}-{len(self.started)}.log"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        ready: str | Callable[[Proc], object] | None = None,
        timeout: float = 60,
        interval: float = 0.1,
        log_path: Path | None = None,
        echo: Echo | None = None,
    ) -> Proc:
        """Start argv with the stack's environment plus `env`; with `ready`, wait until that text shows in its
        log (or the callable says so), failing at once with the log's tail if the process exits first."""
        log_path = log_path or self.log_path(name)
        full_env = {**self.env, **(env or {})}
        if echo is None:
            with log_path.open("ab") as log:
                proc = processes.start(argv, env=full_env, stdout=log)
        else:
            proc = processes.start(argv, env=full_env, stdout=subprocess.PIPE)
            threading.Thread(target=_copy_lines, args=(proc, log_path, echo), name=f"{name}-log", daemon=True).start()
        handle = Proc(name=name, proc=proc, log_path=log_path)
        self.started.append(handle)
        if ready is not None:
            self.wait_ready(handle, ready, timeout=timeout, interval=interval)
        return handle

    def wait_ready(
        self, handle: Proc, ready: str | Callable[[Proc], object], *, timeout: float, interval: float = 0.1
    ) -> None:
        def is_ready() -> object:
            if handle.proc.poll() is not None:
                raise RuntimeError(f"{handle.name} exited with {handle.proc.returncode}:\n{handle.log()[-4000:]}")
            if callable(ready):
                return ready(handle)
            return ready in handle.log_path.read_text(errors="replace") if handle.log_path.exists() else False

        processes.wait_for(is_ready, timeout=timeout, interval=interval, what=f"{handle.name} to be ready")

    def stop(self, handle: Proc, *, grace: float | None = None, first: int | None = None) -> int | None:
        if handle.stopped:
            return handle.proc.returncode
        handle.stopped = True
        # A stopped (SIGSTOPped) group would never act on SIGTERM: resume it first.
        processes.signal_group(handle.proc, signal.SIGCONT)
        return processes.stop(
            handle.proc,
            grace=self.grace if grace is None else grace,
            first=self.first if first is None else first,
        )

    def stop_all(self, *, grace: float | None = None, first: int | None = None) -> list[tuple[Proc, int | None]]:
        return [(handle, self.stop(handle, grace=grace, first=first)) for handle in reversed(self.started)]


class LocalStack(Processes):
    """Processes plus the emulator they share, the topology's queues on it and the database they use."""

    def __init__(self, workdir: Path, *, env: Mapping[str, str] | None = None, grace: float = 10.0, first=None):
        super().__init__(workdir, env=env, grace=grace, first=first)
        self.endpoint = ""
        self.emulator: Proc | None = None

    def start_emulator(self, port: int | None = None, *, echo: Echo | None = None, timeout: float = 30) -> str:
        """The SQS emulator (moto plus AWS/SQS metrics) on `port` (a free one if None), answering; its URL."""
        port = port or processes.free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.emulator = self.start(
            "sqs",
            [sys.executable, "-m", "devstack.sqs_emulator", "-p", str(port)],
            log_path=self.log_path("sqs"),
            echo=echo,
        )
        wait_until_up(self.endpoint, self.emulator.proc, timeout=timeout)
        return self.endpoint

    def create_queues(self, topology, *, endpoint_url: str | None = None) -> dict[str, str]:
        """Every queue of the topology with its DLQ and redrive policy; {queue key: URL}."""
        from devstack.queues import create_queues

        return create_queues(topology, endpoint_url=endpoint_url or self.endpoint)

    def fresh_queues(self, topology, *, endpoint_url: str | None = None) -> dict[str, str]:
        """Forget every queue and message, then create the topology's queues again (between tests or phases:
        a stopped worker's long poll holds the queue object it started on, never the new one)."""
        reset(endpoint_url or self.endpoint)
        return self.create_queues(topology, endpoint_url=endpoint_url)

    def migrate(self, argv: Sequence[str] | None = None, *, echo: Echo | None = None, timeout: float = 300) -> None:
        """Migrate the stack's database (`manage.py migrate`, or `argv`) in a child with the stack's environment. A
        new SQLite file is a copy of the last migration's result when nothing the schema depends on changed
        (devstack/sqlite_template.py)."""
        env = {**os.environ, **self.env}  # what the migrate child sees
        fresh = None if argv is not None else _new_sqlite_file(env)
        if fresh is None:
            self._run_migrate(argv, echo=echo, timeout=timeout)
            return
        settings_module = env.get("DJANGO_SETTINGS_MODULE", "")
        migrated_copy(fresh, schema_key(settings_module), lambda: self._run_migrate(None, echo=echo, timeout=timeout))

    def _run_migrate(self, argv: Sequence[str] | None, *, echo: Echo | None, timeout: float) -> None:
        argv = list(argv or [sys.executable, "manage.py", "migrate", "-v", "0"])
        handle = self.start("migrate", argv, echo=echo)
        try:
            code = handle.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(handle, grace=5)
            raise
        finally:
            self.started.remove(handle)
        if code != 0:
            raise RuntimeError(f"migrate failed (exit {code}):\n{handle.log()[-4000:]}")


def _new_sqlite_file(env: Mapping[str, str]) -> Path | None:
    """The SQLite file a stack with this environment uses, if that is its database and the file does not exist."""
    path = env.get("SQLITE_PATH")
    if env.get("DATABASE_URL") or not path or Path(path).exists():
        return None
    return Path(path)


@contextlib.contextmanager
def local_stack(
    workdir: Path,
    *,
    env: Mapping[str, str] | None = None,
    sqs_port: int | None = None,
    emulator: bool = True,
    grace: float = 10.0,
    first=None,
    echo: Echo | None = None,
) -> Iterator[LocalStack]:
    """A LocalStack under `workdir` (its emulator started unless `emulator=False`); every process it started is
    stopped by PID on the way out, whatever happened inside."""
    workdir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(
        workdir, env={"PYTHONUNBUFFERED": "1", "PATH": processes.venv_path(), **(env or {})}, grace=grace, first=first
    )
    try:
        if emulator:
            stack.start_emulator(sqs_port, echo=echo)
        yield stack
    finally:
        stack.stop_all()


__all__ = ["REPO_ROOT", "LocalStack", "Proc", "Processes", "local_stack"]
