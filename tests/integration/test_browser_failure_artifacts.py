"""A browser test that fails leaves what its page showed in test-artifacts/, for a wait that timed out under load
says only what it waited for."""

from __future__ import annotations

import pytest

from devstack.processes import REPO_ROOT
from tests.integration.browser import chromium_page


def test_a_failing_browser_test_keeps_its_page(tmp_path):
    # GIVEN a page showing something
    artifacts = REPO_ROOT / "test-artifacts"
    name = tmp_path.name
    for suffix in (".png", ".txt"):
        (artifacts / f"failed-{name}{suffix}").unlink(missing_ok=True)

    # WHEN the test fails while the page is open
    failing = pytest.raises(AssertionError, match="the cell never showed 1")
    with failing, chromium_page(tmp_path / "chromium-profile") as page:
        page.set_content("<table><tr><td class='dlq'>—</td></tr></table><p id='status'>refresh failed</p>")
        raise AssertionError("the cell never showed 1")

    # THEN its error is the test's own, and the page is kept as a screenshot and as text
    assert (artifacts / f"failed-{name}.png").stat().st_size > 0
    assert "refresh failed" in (artifacts / f"failed-{name}.txt").read_text()
