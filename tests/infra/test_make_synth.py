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


def _run(argv: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO_ROOT, env={**_env(), **env}, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def offline_synth() -> subprocess.CompletedProcess | None:
    """The module's one synth (a synth costs about 20 CPU-s of node and jsii): bin/synth in a network namespace with
    no interface up, REBUILD=1 so it synthesizes whatever cdk.out/ holds. The node dependencies are installed first,
    with the network (bin/node-deps: npm ci only if the lock changed). None where no namespace can be made: then
    `make synth` below synthesizes itself."""
    missing = [tool for tool in ("node", "npm", "make") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found on PATH: `make synth` needs Node.js and npm", pytrace=False)
    deps = _run(["bin/node-deps"], timeout=300)
    assert deps.returncode == 0, (deps.stdout + deps.stderr)[-4000:]
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        return None
    return _run(["unshare", "-rn", "bin/synth"], timeout=300, REBUILD="1")


@pytest.fixture(scope="module")
def make_run(offline_synth) -> subprocess.CompletedProcess:
    """`make synth lint-infra`: one make, so the synth lint-infra depends on runs once; after the offline synth
    its inputs are unchanged, and it lints that synth's template."""
    return _run(["make", "synth", "lint-infra"], timeout=580)


def test_make_synth_and_lint_infra_succeed(make_run, offline_synth):
    # GIVEN the repository, synthesized without network just before if a namespace could be made
    # WHEN `make synth lint-infra` has run
    output = make_run.stdout + make_run.stderr

    # THEN both succeed: the template is in cdk.out/ (synthesized by make itself, or found up to date after the
    # offline synth), cfn-lint and hadolint have nothing to say
    assert make_run.returncode == 0, output[-4000:]
    expected = "synth: ok" if offline_synth is None or offline_synth.returncode != 0 else "inputs unchanged"
    assert expected in make_run.stdout, output[-4000:]
    assert (REPO_ROOT / "cdk.out" / "celery-sqs-dev-infra.template.json").is_file()
    assert "lint-infra: ok" in make_run.stdout


def test_synth_needs_no_network(offline_synth):
    # GIVEN node_modules in place, and a way to run without any network
    if offline_synth is None:
        pytest.skip("cannot create a network namespace here (unshare -rn)")

    # WHEN bin/synth has run in a network namespace with no interface up (REBUILD: even if cdk.out/ was up to date)
    result = offline_synth

    # THEN it still synthesized: no AWS call, no notices, no version check was needed
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
