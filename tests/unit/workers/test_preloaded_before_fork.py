"""Everything a task imports is loaded in the worker's main process before the pool forks.

An import inside a task, or inside a hook Celery runs around it, runs in the pool child on its first task, within the
task's time limit; each replacement child pays it again. Under load that import (pydantic building the job kinds'
models, for one) took longer than the 2 s soft limit, and a Job failed twice with SoftTimeLimitExceeded and went to
the DLQ (CI, 2026-12-02). Django's system checks load the URLconf, and with it most of the API, so a worker that runs
them hid this; one started with CELERY_SKIP_CHECKS did not.

The main process's modules are read in a fresh interpreter after the loader's `init_worker()`: what the worker runs
before it forks (Django set up, the task modules autodiscovered, the `include` setting imported).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PROJECT_PACKAGES = {"api", "workers", "core"}

# Modules whose functions run only in the worker's main process (after the fork), never in a pool child: their lazy
# imports cost a child nothing. Each with the reason.
MAIN_PROCESS_ONLY = {
    "workers.bootsteps": "consumer bootsteps start and stop in the main process, after the pool has forked",
}

MAIN_PROCESS_MODULES = """
import json, sys
from workers.celery_app import app
app.loader.init_worker()
print(json.dumps(sorted(sys.modules)))
"""


@cache
def modules_loaded_before_fork() -> frozenset[str]:
    env = {**os.environ, "CELERY_SKIP_CHECKS": "1", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", MAIN_PROCESS_MODULES],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return frozenset(json.loads(out.stdout.splitlines()[-1]))


def source_of(module: str) -> Path:
    path = REPO_ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def is_project_module(name: str) -> bool:
    return name.split(".")[0] in PROJECT_PACKAGES and source_of(name).exists()


def lazy_imports(module: str) -> list[tuple[int, str]]:
    """(line, module) for each project module imported inside a function of `module`."""
    found = []
    for function in ast.walk(ast.parse(source_of(module).read_text())):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            found += [(node.lineno, name) for name in names if is_project_module(name)]
    return found


def test_every_module_a_task_imports_lazily_is_loaded_before_the_pool_forks():
    # GIVEN the modules the worker's main process holds before it forks, without Django's system checks
    loaded = modules_loaded_before_fork()
    project_modules = sorted(m for m in loaded if is_project_module(m) and m not in MAIN_PROCESS_ONLY)

    # WHEN each one's function-level imports of project modules are read
    missing = [
        f"{module}:{line} imports {name}"
        for module in project_modules
        for line, name in lazy_imports(module)
        if name not in loaded
    ]

    # THEN every one is already loaded: a pool child's first task imports nothing of the project
    assert missing == []


def test_the_task_modules_and_their_services_are_loaded_before_the_pool_forks():
    # GIVEN the modules the worker's main process holds before it forks
    loaded = modules_loaded_before_fork()

    # THEN the task modules, the services they call and the idempotency claim are among them (the check above only
    # sees imports it can read; these are the ones the incident was about)
    expected = {
        "api.jobs.tasks",
        "api.jobs.services",
        "api.jobs.demo_services",
        "api.jobs.kinds",
        "api.newsletter.tasks",
        "api.newsletter.services",
        "workers.idempotency",
    }
    assert expected - loaded == set()


def test_the_exemptions_are_modules_that_exist_and_have_lazy_imports():
    # GIVEN the modules exempted as main-process only
    # THEN each still exists and still imports lazily (an exemption nothing needs is removed)
    for module in MAIN_PROCESS_ONLY:
        assert source_of(module).exists(), module
        assert lazy_imports(module), module


def test_the_worker_includes_the_idempotency_claim_whatever_the_task_modules_import():
    # GIVEN the project's Celery app
    from workers.celery_app import app

    # THEN its `include` setting names workers.idempotency, which BaseTask imports lazily: the check above would pass
    # on the demo tasks' import of it alone, and a project without them would fork without it
    assert "workers.idempotency" in app.conf.include
    assert "workers.idempotency" in app.loader.default_modules
