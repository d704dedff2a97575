"""A real headless browser for end-to-end tests: Debian's chromium (installed with apt if missing), driven by
Playwright's Python package. Playwright's own browser download is never used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devstack import processes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # tests run as root, where chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_TIMEOUT = 900


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt-get (as root) on a machine that lacks it."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, check=False, timeout=INSTALL_TIMEOUT).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update"], env=env, check=True, timeout=INSTALL_TIMEOUT)
        subprocess.run(install, env=env, check=True, timeout=INSTALL_TIMEOUT)
    if not CHROMIUM.exists():
        raise RuntimeError(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM


@contextmanager
def chromium_page(user_data_dir: Path, *, width: int = 1280, height: int = 900) -> Iterator[object]:
    """A Playwright page in a fresh chromium profile; the browser is closed (and its processes gone) after."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir),
            executable_path=str(executable),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": width, "height": height},
        )
        page = context.pages[0] if context.pages else context.new_page()
        try:
            yield page
        except BaseException:
            _keep_failed_page(page, user_data_dir.parent.name)
            raise
        finally:
            context.close()


def _keep_failed_page(page, name: str) -> None:
    """What the page showed when its test failed (a wait that timed out says only what it waited for), in
    test-artifacts/failed-<test>.png and .txt. Never raises: the test's own error is the one to see."""
    artifacts = processes.REPO_ROOT / "test-artifacts"
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(artifacts / f"failed-{name}.png"), full_page=True)
        (artifacts / f"failed-{name}.txt").write_text(page.inner_text("body"))
    except Exception as exc:  # noqa: BLE001 (a closed or crashed page: nothing to keep)
        print(f"could not keep the failed page: {exc!r}")


# Shared by the browser tests (tests/integration/conftest.py makes the fixtures available to every test there).
STAFF_USERNAME = "operator"
STAFF_PASSWORD = "operator-pw"  # noqa: S105 (a test account in the test database)


@pytest.fixture
def live_api(transactional_db, start_process) -> str:
    """The api served by gunicorn (as in production, two workers) against the test database and the emulator;
    the ops pages refresh every second. Stopped by PID after the test, with the test's other processes."""
    port = processes.free_port()
    start_process(
        "api",
        [sys.executable, "-m", "gunicorn", "api.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--no-control-socket"],
        env={"OPS_REFRESH_SECONDS": "1"},
        ready="Booting worker",
    )
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def staff_user(django_user_model):
    """A staff account (STAFF_USERNAME / STAFF_PASSWORD) that may open the ops pages."""
    return django_user_model.objects.create_user(STAFF_USERNAME, password=STAFF_PASSWORD, is_staff=True)


def log_in(page, api_url: str, path: str = "/ops/queues") -> None:
    """Open `path`, log in through the admin's form as the staff account, and land back on `path`."""
    page.goto(f"{api_url}{path}")
    page.wait_for_url("**/admin/login/**")  # staff only: the admin login first
    page.fill("#id_username", STAFF_USERNAME)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{api_url}{path}")


@contextmanager
def staff_page(api_url: str, user_data_dir: Path, path: str = "/ops/queues", **size) -> Iterator[object]:
    """A chromium page logged in as the staff account, on `path`. Playwright's sync API runs an event loop in
    this thread, where Django refuses database calls: use the ORM before or after the `with`, not inside."""
    with chromium_page(user_data_dir, **size) as page:
        log_in(page, api_url, path)
        yield page
