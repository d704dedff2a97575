"""ECS task scale-in protection: on while the worker runs or holds tasks, renewed before it lapses, off when idle."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from core.env import EnvError, env_float, env_int, env_str

logger = logging.getLogger(__name__)

AGENT_URI_ENV = "ECS_AGENT_URI"  # injected by the ECS agent into every container of a task
STATE_PATH = "/task-protection/v1/state"  # PUT {"ProtectionEnabled": bool, "ExpiresInMinutes": n}
MAX_MINUTES = 2880  # the endpoint's bounds for ExpiresInMinutes
REQUEST_TIMEOUT_SECONDS = 2.0  # the agent is on the task's own link-local address: it answers fast or not at all
POLL_SECONDS = 0.5  # how often the thread looks at what the worker holds


@dataclass(frozen=True)
class ProtectionSettings:
    """WORKER_PROTECTION_MINUTES: the expiry sent with each PUT (a worker that dies holding protection blocks
    scale-in at most this long); RENEW_SECONDS: how often a busy worker renews it (well inside the expiry);
    IDLE_SECONDS: how long the worker must hold nothing before it clears protection (so a stream of short
    tasks does not flap it)."""

    minutes: int = 10
    renew_seconds: float = 240.0
    idle_seconds: float = 15.0

    @classmethod
    def from_env(cls) -> ProtectionSettings:
        settings = cls(
            minutes=env_int("WORKER_PROTECTION_MINUTES", cls.minutes),
            renew_seconds=env_float("WORKER_PROTECTION_RENEW_SECONDS", cls.renew_seconds),
            idle_seconds=env_float("WORKER_PROTECTION_IDLE_SECONDS", cls.idle_seconds),
        )
        if not 1 <= settings.minutes <= MAX_MINUTES:
            raise EnvError(f"WORKER_PROTECTION_MINUTES={settings.minutes} must be between 1 and {MAX_MINUTES}")
        if not 0 < settings.renew_seconds < 60 * settings.minutes:
            raise EnvError(
                f"WORKER_PROTECTION_RENEW_SECONDS={settings.renew_seconds} must be above 0 and below the "
                f"protection's {60 * settings.minutes} s (WORKER_PROTECTION_MINUTES), or it lapses between renewals"
            )
        if settings.idle_seconds < 0:
            raise EnvError(f"WORKER_PROTECTION_IDLE_SECONDS={settings.idle_seconds} must not be negative")
        return settings


def holds_tasks(state) -> bool:
    """Celery's worker state (celery.worker.state) holds a task: running, reserved, or waiting for its ETA.
    len() of its WeakSets is safe from another thread (iterating them is not)."""
    return any(len(getattr(state, name, ())) for name in ("active_requests", "reserved_requests", "scheduled_requests"))


def agent_uri() -> str | None:
    """The ECS agent's endpoint, or None outside ECS."""
    uri = env_str(AGENT_URI_ENV, None)
    if uri is not None and not uri.startswith(("http://", "https://")):
        raise EnvError(f"{AGENT_URI_ENV}={uri!r} is not an http(s) URI")
    return uri


class AgentError(Exception):
    """The agent endpoint refused or did not answer; the message says what it said."""


def put_state(uri: str, body: dict, *, timeout: float = REQUEST_TIMEOUT_SECONDS) -> dict:
    """PUT the protection state; the agent answers {"protection": {...}} (200) or {"error": {...}} /
    {"failure": {...}} with a 4xx/5xx (e.g. AccessDeniedException when the task role lacks
    ecs:UpdateTaskProtection)."""
    request = urllib.request.Request(  # noqa: S310 (agent_uri() admits http(s) only)
        uri.rstrip("/") + STATE_PATH,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the agent's own URI)
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AgentError(f"HTTP {exc.code}: {_reason(exc.read())}") from None
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused, unparsable answer
        raise AgentError(repr(exc)) from None
    if "protection" not in answer:
        raise AgentError(_reason(json.dumps(answer).encode()))
    return answer["protection"]


def _reason(raw: bytes) -> str:
    try:
        answer = json.loads(raw)
    except ValueError:
        return raw[:200].decode(errors="replace")
    detail = answer.get("error") or answer.get("failure") or answer
    return json.dumps(detail)[:300]


class TaskProtection:
    """A thread that keeps the task protected while `busy()` and clears protection after `idle_seconds` of
    not busy. Failures never reach the worker: logged once per wanted state, retried at the next renewal."""

    def __init__(
        self,
        *,
        uri: str,
        busy: Callable[[], bool],
        settings: ProtectionSettings,
        put: Callable[[str, dict], dict] = put_state,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.uri, self.busy, self.settings, self.put, self.clock = uri, busy, settings, put, clock
        self.protected = False  # what the agent last accepted
        self._next_put = 0.0  # when a protected worker renews (or a failed PUT is tried again)
        self._idle_since: float | None = None
        self._failing: bool | None = None  # the wanted state whose failure was logged
        self._stop: threading.Event | None = None

    def start(self) -> None:
        if self._stop is not None:
            return
        self._stop = threading.Event()
        threading.Thread(target=self._run, args=(self._stop,), name="ecs-task-protection", daemon=True).start()

    def stop(self) -> None:
        """Stop the thread; a protection set for tasks still running is left to expire on its own."""
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_SECONDS):
            try:
                self.step()
            except Exception:  # never let protection bookkeeping take the worker down
                logger.exception("ECS task protection step failed")

    def step(self) -> None:
        now = self.clock()
        if self.busy():
            self._idle_since = None
            if not self.protected or now >= self._next_put:
                self._set(True, now)
            return
        if self._idle_since is None:
            self._idle_since = now
        if self.protected and now - self._idle_since >= self.settings.idle_seconds:
            self._set(False, now)

    def _set(self, enabled: bool, now: float) -> None:
        if now < self._next_put and self._failing == enabled:
            return  # the last try for this state failed: wait before asking again
        body: dict = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.settings.minutes
        try:
            self.put(self.uri, body)
        except Exception as exc:  # noqa: BLE001 (AgentError, or anything else: the worker goes on)
            self._next_put = now + min(self.settings.renew_seconds, 30.0)
            if self._failing != enabled:
                self._failing = enabled
                logger.warning(
                    "could not %s ECS task scale-in protection: %s (retrying; the worker goes on)",
                    "set" if enabled else "clear",
                    exc,
                )
            return
        if self._failing is not None:
            logger.warning("ECS task scale-in protection works again (%s)", "set" if enabled else "cleared")
            self._failing = None
        self.protected = enabled
        self._next_put = now + self.settings.renew_seconds if enabled else 0.0
        logger.info(
            "ECS task scale-in protection %s",
            f"set for {self.settings.minutes} min" if enabled else "cleared (idle)",
        )
