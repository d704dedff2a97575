"""A migrated SQLite database copied from a template instead of migrated again: `manage.py migrate` costs 3.4 CPU-s
a stack, and the benchmarks, the soak and `make run` each start stacks on a fresh file. The template is keyed by what
the schema depends on (every migration file, uv.lock, the settings module) and kept under var/cache/."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from devstack.build_inputs import files_digest
from devstack.processes import REPO_ROOT

CACHE_DIR = REPO_ROOT / "var" / "cache"
MIGRATION_DIRS = ("api", "workers")  # the project's apps live under these


def schema_key(settings_module: str, root: Path = REPO_ROOT) -> str:
    """A hash of every migration file of the project (path and content), uv.lock (the third-party apps' own
    migrations come with their locked versions) and the settings module: any change gives another template."""
    files = [root / "uv.lock"]
    for top in MIGRATION_DIRS:
        files += sorted((root / top).glob("**/migrations/*.py"))
    return files_digest(root, files, [settings_module])[:32]


def migrated_copy(target: Path, key: str, migrate: Callable[[], None], cache_dir: Path | None = None) -> bool:
    """Put a migrated database at `target` (which must not exist yet): a copy of the template for `key` if there is
    one, else `migrate()` (which migrates `target`) and keep a copy of the result as the template. Stacks that start
    together wait for the first one's migration on a lock instead of each migrating. True if it was a copy."""
    if target.exists():
        raise FileExistsError(f"{target} exists: a template copy would replace its data")
    cache_dir = cache_dir or CACHE_DIR
    cache_dir.mkdir(parents=True, exist_ok=True)
    template = cache_dir / f"migrated-{key}.sqlite3"
    with (cache_dir / f"migrated-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if template.exists():
            shutil.copyfile(template, target)
            return True
        migrate()
        partial = template.with_suffix(f".{os.getpid()}.partial")
        shutil.copyfile(target, partial)
        os.replace(partial, template)  # a reader never sees half a template
        return False
