"""The injected round trip: the fault proxy's latency mode in a process of its own, in front of the emulator.

`python -m bench.latency_proxy <target_port> <latency_ms> <port>` serves until SIGTERM. Its own process, so its
sleeps and copies never share the GIL of the benchmark that times the clients behind it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from devstack.fault_proxy import FaultProxy

ENV = "BENCH_INJECTED_LATENCY_MS"  # set by `python -m bench` for each run; read by harness.injected_latency_ms()


def latency_proxy(target_port: int, latency_ms: float, *, port: int = 0) -> FaultProxy:
    """A started FaultProxy(http=True) that waits `latency_ms` before forwarding each request (0: at once). Either
    way it keeps its clients' connections alive, as SQS does, though moto's werkzeug closes each of its own."""
    proxy = FaultProxy(target_port, port=port, http=True).start()
    if latency_ms > 0:
        proxy.set_mode("latency", latency_ms=latency_ms)
    return proxy


def argv(target_port: int, latency_ms: float, port: int) -> list[str]:
    return [sys.executable, "-m", "bench.latency_proxy", str(target_port), f"{latency_ms:g}", str(port)]


def main(args: list[str]) -> int:
    target_port, latency_ms, port = int(args[0]), float(args[1]), int(args[2])
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    proxy = latency_proxy(target_port, latency_ms, port=port)
    print(f"latency proxy 127.0.0.1:{proxy.port} -> {target_port}, {latency_ms:g} ms per request", flush=True)
    while not stopped.wait(0.5):
        pass
    proxy.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
