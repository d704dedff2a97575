"""kombu's pycurl client with curl's own timer honoured: in milliseconds, one at a time, dropped when curl drops it."""

from __future__ import annotations

from typing import Any

from kombu.asynchronous import get_event_loop
from kombu.asynchronous.http.curl import CurlClient


class TimedCurlClient(CurlClient):
    """kombu 5.7.0's CurlClient gives curl's timer (CURLMOPT_TIMERFUNCTION: milliseconds, -1 to delete it) to
    hub.call_later as seconds and never cancels one: every request leaves timers that run _timeout_check (each of
    curl's sockets taken out of the event loop and put back, curl_multi_socket_all) at once (-1, 0) or minutes late
    (a 200 ms timer after 200 s). Here the timer is curl's: in seconds, replaced by the next, cancelled by -1.
    kombu's own 1 s _timeout_check still runs, as before."""

    _curl_timer: Any = None

    def _set_timeout(self, msecs):
        if self._curl_timer is not None:
            self._curl_timer.cancel()
            self._curl_timer = None
        if msecs >= 0 and not getattr(self, "_closed", False):
            self._curl_timer = self.hub.call_later(msecs / 1000, self._on_curl_timer)

    def _on_curl_timer(self) -> None:
        self._curl_timer = None
        if not self._closed:
            self._timeout_check()

    def close(self):
        if self._curl_timer is not None:
            self._curl_timer.cancel()
            self._curl_timer = None
        super().close()


def install_http_client(hub: Any = None) -> Any:
    """Give the event loop a TimedCurlClient as its HTTP client, unless it has one (of any kind) already: kombu's
    get_client() caches the client on the hub, and every async SQS connection made after this uses it."""
    hub = hub or get_event_loop()
    if hub is not None and getattr(hub, "_current_http_client", None) is None:
        hub._current_http_client = TimedCurlClient(hub)
    return getattr(hub, "_current_http_client", None)
