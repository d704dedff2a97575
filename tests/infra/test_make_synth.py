"""`make synth` and `make lint-infra` work from the command line, offline, and lint clean."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    # The stage from the defaults (dev), whatever this shell says.
    return {k: v for k, v in os.environ.items() if k not in {"INFRA_STAGE", "QUEUE_TOPOLOGY", "MAKEFLAGS"}}


@pytest.fixture(scope="module")
def make_run() -> subprocess.CompletedProcess:
    """`make synth lint-infra`: one make, so the synth lint-infra depends on runs once."""
    missing = [tool for tool in ("node", "npm", "make") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found on PATH: `make synth` needs Node.js and npm", pytrace=False)
    return subprocess.run(
        ["make", "synth", "lint-infra"], cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=580
    )


def test_make_synth_and_lint_infra_succeed(make_run):
    # GIVEN the repository (npm ci runs only if package.json or its lock changed)
    # WHEN `make synth lint-infra` has run
    output = make_run.stdout + make_run.stderr

    # THEN both succeed: the template is in cdk.out/, cfn-lint and hadolint have nothing to say
    assert make_run.returncode == 0, output[-4000:]
    assert (REPO_ROOT / "cdk.out" / "celery-sqs-dev-infra.template.json").is_file()
    assert "lint-infra: ok" in make_run.stdout


def test_synth_needs_no_network(make_run):
    # GIVEN node_modules in place (the run above) and a way to run without any network
    assert make_run.returncode == 0
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare -rn)")

    # WHEN bin/synth runs in a network namespace with no interface up (REBUILD: even if cdk.out/ is up to date)
    result = subprocess.run(
        ["unshare", "-rn", "bin/synth"],
        cwd=REPO_ROOT,
        env={**_env(), "REBUILD": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )

    # THEN it still synthesizes: no AWS call, no notices, no version check was needed
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "cdk synth" in result.stdout and "skipped" not in result.stdout


def test_synth_is_skipped_when_its_inputs_are_unchanged(make_run):
    # GIVEN cdk.out/ synthesized by the runs above, and its inputs' hash beside it
    assert make_run.returncode == 0
    stamp = REPO_ROOT / "cdk.out" / ".inputs.sha256"
    assert stamp.is_file()

    # WHEN bin/synth runs again with nothing changed
    result = subprocess.run(["bin/synth"], cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=300)

    # THEN it does nothing and says so; the template is still there (tests/unit/devstack/test_build_inputs.py:
    # any change of an input changes the hash, and the synth runs)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "inputs unchanged" in result.stdout and "cdk synth" not in result.stdout
    assert (REPO_ROOT / "cdk.out" / "celery-sqs-dev-infra.template.json").is_file()
