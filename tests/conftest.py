"""How the suite runs in parallel (`pytest -n N`, as `make test` does): what shares a worker, what starts first."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# Tests that run node tools in the working tree (npm ci into node_modules/, cdk.out/, .serverless/) or share a
# once-per-session CDK synth (tests/infra/conftest.py): one xdist worker runs them all, one after the other, so
# none races another and the synth runs once.
NODE_TOOLS_GROUP = "node-tools"
NODE_TOOLS_PATHS = (
    TESTS / "infra",
    TESTS / "integration" / "test_serverless_package.py",
    TESTS / "integration" / "test_invoke_lambdas.py",  # bin/node-deps: npm ci into node_modules/
)


# Tests marked `serial` (several workers, pauses, a browser each) run one after another on an xdist worker of their
# group, beside the rest: two groups, so the soak (the longest) does not hold up the others, and never more than two
# of them at once. Listed by file because the scheduler sees node ids, not markers; pytest_collection_modifyitems
# refuses a run where the marker and these lists disagree.
SERIAL_GROUPS = {
    "serial-soak": ("soak", "fencing", "ops_login_browser"),
    "serial-outage-and-pages": ("database_outage", "ops_dashboard", "ops_job_detail_browser", "ops_workers_browser"),
}
SERIAL_PATHS = {
    TESTS / "integration" / f"test_{name}.py": group for group, names in SERIAL_GROUPS.items() for name in names
}


def _in(path: Path, places: tuple[Path, ...]) -> bool:
    return any(path == place or place in path.parents for place in places)


def _parallel(config: pytest.Config) -> bool:
    """A run spread over xdist workers: this process is one of them, or their controller."""
    return hasattr(config, "workerinput") or bool(getattr(config.option, "numprocesses", None))


def scope_of(nodeid: str) -> str:
    """The unit the scheduler hands to one xdist worker: the node-tools group, a serial group, else the test
    alone."""
    path = (TESTS.parent / nodeid.split("::", 1)[0]).resolve()
    if _in(path, NODE_TOOLS_PATHS):
        return NODE_TOOLS_GROUP
    return SERIAL_PATHS.get(path, nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`pytest -n N` (dist "load"): xdist's loadscope scheduler with scope_of() as the scope. (xdist's own
    `--dist loadgroup` marks the nodeid, which pytest 9 no longer lets a plugin change.) The largest scope
    (the node-tools group) goes out first, then the serial groups, then single tests in collection order."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return Scheduling(config, log)


def check_serial_marks(items: list[pytest.Item]) -> None:
    """A test is marked `serial` exactly when its file is in SERIAL_PATHS: else the scheduler would run a marked
    test beside the others, or group an unmarked one."""
    wrong = [
        item.nodeid
        for item in items
        if (item.get_closest_marker("serial") is not None) != (Path(str(item.path)).resolve() in SERIAL_PATHS)
    ]
    if wrong:
        raise pytest.UsageError(f"marked `serial` but not in SERIAL_PATHS, or the other way round: {wrong}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    check_serial_marks(items)
    if not _parallel(config):
        return  # a plain run keeps the testpaths order: fast failures first
    # Long tests first, so the last worker to finish is not the one that drew one at the end; then the
    # integration tests (seconds each), then the rest (fast). sort() is stable: files keep their order within.
    items.sort(
        key=lambda item: (
            item.get_closest_marker("long_running") is None,
            item.get_closest_marker("integration") is None,
        )
    )
