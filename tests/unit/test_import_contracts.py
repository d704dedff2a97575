"""Imports flow one way: api -> workers -> core; lambdas, infra, devstack and bench stand on core alone.

Read from the source with ast: every import statement, also those inside functions and under TYPE_CHECKING, so
a lazy import cannot hide a dependency. Each failure names the file, the line and the import.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "workers", "core", "lambdas", "infra", "devstack", "bench")

# What each top-level package may import of the others (itself always). The order this table implies:
# core at the bottom; workers on core; api on workers (the tasks beside their services) and on devstack for
# its local settings only; lambdas, infra, devstack and bench on core.
MAY_IMPORT = {
    "core": set(),
    "workers": {"core"},
    "api": {"workers", "core", "devstack"},
    "lambdas": {"core"},
    "infra": {"core"},
    "devstack": {"core"},
    "bench": {"devstack", "core"},
}
# api may import devstack only here: the local and test settings fill in the local stack's endpoints, secret and
# ports.
API_DEVSTACK_IMPORTERS = {"api.settings.local", "api.settings.test"}
# The Lambda zip takes core whole and installs lambdas/requirements.txt beside the runtime's boto3: core may
# import the standard library and these, never Django, Celery or kombu.
CORE_THIRD_PARTY = {"boto3", "botocore", "yaml", "pydantic", "aws_lambda_powertools", "typing_extensions"}
# The parts of the local stack and the benchmarks that run the system under test in this process (publish
# through the project's Celery app, read and write its Django models, call its services, load its settings):
# the only imports of api or workers outside api and workers. Each is a (module, imported module) pair; a new one
# fails the test, and so does a pair that is gone (keep the list exact). Nothing imports these modules'
# system-driving functions, so they are left out of the cycle check.
IN_PROCESS_DRIVERS = {
    ("bench.harness", "workers.celery_app"),
    ("bench.publish_latency", "api.jobs.relay_loop"),
    ("bench.publish_latency", "api.jobs.models"),
    ("bench.publish_latency", "api.jobs.tasks"),
    ("bench.recovery", "api.jobs.services"),
    ("bench.recovery", "api.jobs.models"),
    ("bench.redis_settings", "api.settings.local"),
    ("bench.replay", "workers.celery_app"),
    ("devstack.soak", "api.jobs.models"),
    ("devstack.soak", "workers.celery_app"),
    ("devstack.soak", "workers.models"),
    ("devstack.stack_database", "api.jobs.models"),
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name of the file
    imported: str  # dotted module imported (the submodule when `from pkg import submodule`)
    path: str
    line: int

    @property
    def importer_top(self) -> str:
        return self.importer.split(".")[0]

    @property
    def imported_top(self) -> str:
        return self.imported.split(".")[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _project_modules() -> frozenset[str]:
    return frozenset(_module_name(p) for pkg in PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py"))


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def all_imports() -> tuple[Import, ...]:
    found = []
    modules = _project_modules()
    for pkg in PACKAGES:
        for path in sorted((REPO_ROOT / pkg).rglob("*.py")):
            importer = _module_name(path)
            rel = path.relative_to(REPO_ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = _resolve(node, importer, path.name == "__init__.py")
                    names = [
                        f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                    ]
                else:
                    continue
                found += [Import(importer, name, rel, node.lineno) for name in dict.fromkeys(names) if name]
    return tuple(found)


def _between_packages() -> list[Import]:
    return [i for i in all_imports() if i.imported_top in PACKAGES and i.imported_top != i.importer_top]


def _report(title: str, bad: list) -> str:
    return f"{title}:\n" + "\n".join(f"  {b}" for b in bad)


def test_the_reader_sees_imports_inside_functions():
    # GIVEN the source of workers/ (its consumer imports Django models inside functions, not at the top)
    # WHEN its imports are read
    imports = {(i.importer, i.imported) for i in all_imports()}

    # THEN a function-level import is among them (so a lazy import cannot hide a dependency)
    assert ("workers.beat", "workers.models") in imports


def test_each_package_imports_only_the_packages_below_it():
    # GIVEN every import from one top-level package into another, less the in-process drivers
    crossings = [i for i in _between_packages() if (i.importer, i.imported) not in IN_PROCESS_DRIVERS]

    # WHEN each is checked against MAY_IMPORT
    bad = [i for i in crossings if i.imported_top not in MAY_IMPORT[i.importer_top]]
    bad += [
        i
        for i in crossings
        if i.importer_top == "api" and i.imported_top == "devstack" and i.importer not in API_DEVSTACK_IMPORTERS
    ]

    # THEN none goes up or sideways: workers never imports api; lambdas, infra, devstack and bench never import
    # workers or api; api never imports lambdas; core imports none of the others
    assert not bad, _report("imports against the direction api -> workers -> core (see MAY_IMPORT)", bad)


def test_core_imports_nothing_the_lambda_zip_lacks():
    # GIVEN core's imports of anything but itself
    outside = [i for i in all_imports() if i.importer_top == "core" and i.imported_top != "core"]

    # WHEN the standard library and the Lambda's own requirements are set aside
    bad = [
        i for i in outside if i.imported_top not in sys.stdlib_module_names and i.imported_top not in CORE_THIRD_PARTY
    ]

    # THEN nothing is left: no Django, Celery, kombu, nor any project package
    assert not bad, _report("core imports what the Lambda zip does not hold", bad)


def test_the_in_process_drivers_list_is_exact():
    # GIVEN every import of api or workers from devstack or bench
    found = {
        (i.importer, i.imported)
        for i in _between_packages()
        if i.importer_top in {"devstack", "bench"} and i.imported_top in {"api", "workers"}
    }

    # THEN each is listed in IN_PROCESS_DRIVERS, and each listed pair still exists
    new, gone = sorted(found - IN_PROCESS_DRIVERS), sorted(IN_PROCESS_DRIVERS - found)
    assert not new, _report("devstack/bench import api or workers (not in IN_PROCESS_DRIVERS)", new)
    assert not gone, _report("IN_PROCESS_DRIVERS lists imports that are gone", gone)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_cycle_between_top_level_packages():
    # GIVEN the graph of imports between top-level packages (the in-process drivers, which nothing imports for
    # what they drive, left out)
    edges: dict[str, set[str]] = {}
    for i in _between_packages():
        if (i.importer, i.imported) not in IN_PROCESS_DRIVERS:
            edges.setdefault(i.importer_top, set()).add(i.imported_top)

    # WHEN its cycles are sought  THEN there are none
    assert _cycles(edges) == []


def test_the_celery_app_and_its_signal_handlers_do_not_import_each_other():
    # GIVEN the imports among workers' modules (also those inside functions)
    edges: dict[str, set[str]] = {}
    for i in all_imports():
        if i.importer_top == "workers" and i.imported_top == "workers":
            edges.setdefault(i.importer, set()).add(i.imported)

    # WHEN its cycles are sought  THEN there are none (workers.celery_app <-> workers.signals was one)
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    # GIVEN a graph with a cycle a -> b -> c -> a and a tail d -> a  WHEN its cycles are sought
    # THEN the cycle is reported, the tail is not
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
