"""Every pytest worker collects every test: collecting must not import the CDK (about 8 s of CPU per worker in jsii);
only the worker that runs the infra tests does (tests/infra/conftest.py)."""

from __future__ import annotations

import subprocess
import sys

from devstack.processes import REPO_ROOT

COLLECT_AND_REPORT = """
import sys, pytest
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests/infra", "tests/integration"])
print("CDK-IMPORTED" if "aws_cdk" in sys.modules else "CDK-NOT-IMPORTED", int(code))
"""


def test_collecting_the_infra_tests_does_not_import_the_cdk():
    # GIVEN the infra and integration tests
    # WHEN pytest collects them in a fresh interpreter
    done = subprocess.run(
        [sys.executable, "-c", COLLECT_AND_REPORT], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    # THEN the collection succeeds and aws_cdk was never imported
    last = done.stdout.strip().splitlines()[-1]
    assert last == "CDK-NOT-IMPORTED 0", done.stdout[-2000:] + done.stderr[-2000:]
