"""Unit tests of workers/transport/curl_timer.py: curl's timer reaches the event loop in seconds, one at a time."""

from __future__ import annotations

from workers.transport.curl_timer import TimedCurlClient, install_http_client


class Timer:
    def __init__(self, delay, callback):
        self.delay, self.callback, self.cancelled = delay, callback, False

    def cancel(self):
        self.cancelled = True


class Hub:
    """kombu's event loop as the client uses it: timers (which it can cancel) and the readers/writers of fds."""

    def __init__(self):
        self.timers: list[Timer] = []
        self.on_close: set = set()

    def call_later(self, delay, callback, *args):
        self.timers.append(Timer(delay, callback))
        return self.timers[-1]

    def call_repeatedly(self, delay, callback, *args):
        return Timer(delay, callback)

    def live(self) -> list[float]:
        return [t.delay for t in self.timers if not t.cancelled]

    def add_reader(self, *args):
        pass

    def add_writer(self, *args):
        pass

    def remove(self, *args):
        pass


def test_curls_timer_in_milliseconds_is_scheduled_in_seconds():
    # GIVEN the client on an event loop
    hub = Hub()
    client = TimedCurlClient(hub)
    hub.timers.clear()
    # WHEN curl asks to be called back in 200 ms
    client._set_timeout(200)
    # THEN one timer is due in 0.2 s (kombu's own client: in 200 s)
    assert hub.live() == [0.2]
    client.close()


def test_a_new_timer_replaces_the_last_and_minus_one_deletes_it():
    # GIVEN a timer curl asked for
    hub = Hub()
    client = TimedCurlClient(hub)
    hub.timers.clear()
    client._set_timeout(200)
    # WHEN curl asks for another THEN only the new one is due
    client._set_timeout(5)
    assert hub.live() == [0.005]
    # WHEN curl deletes its timer (-1) THEN none is due (kombu's own client ran its check at once for -1)
    client._set_timeout(-1)
    assert hub.live() == []
    client.close()


def test_the_timer_runs_curls_check_once_and_none_after_close():
    # GIVEN a timer curl asked for
    hub = Hub()
    client = TimedCurlClient(hub)
    checks = []
    client._timeout_check = lambda: checks.append(1)
    client._set_timeout(0)
    # WHEN it fires THEN curl's check runs
    hub.timers[-1].callback()
    assert checks == [1]
    # WHEN the client closes with a timer due THEN that timer is cancelled, and a late one checks nothing
    client._set_timeout(10)
    late = hub.timers[-1]
    client.close()
    assert late.cancelled
    late.callback()
    assert checks == [1]


def test_the_event_loop_gets_the_client_once():
    # GIVEN an event loop without an HTTP client
    hub = Hub()
    # WHEN it is installed twice THEN the loop's client is one TimedCurlClient, kept
    first = install_http_client(hub)
    assert isinstance(first, TimedCurlClient)
    assert install_http_client(hub) is first
    first.close()
