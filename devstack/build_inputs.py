"""A hash of what a build step reads, so bin/synth and bin/package-lambdas skip a build whose inputs are unchanged.

python -m devstack.build_inputs [--exclude PATH]... [-- WORD...]   prints the hash of the repository's files
(less what never feeds a build: tests, benchmarks, docs, caches and build outputs) and of the WORDs (the
stage, the arguments, tool versions). The scripts keep it next to their output and compare.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Never an input of a build: version control, virtualenvs, caches, build outputs (.gitignore's list), and the
# tests, benchmarks and docs, which neither the CDK app, the image, nor the Lambda zip reads.
NEVER_INPUTS = frozenset(
    {
        ".git",
        ".venv",
        ".tools",
        "var",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        "node_modules",
        "cdk.out",
        ".serverless",
        "test-artifacts",
        "tests",
        "bench",
    }
)
NEVER_SUFFIXES = (".pyc", ".md")


def input_files(root: Path, exclude: Iterable[str] = ()) -> list[Path]:
    """Every file under root that may feed a build, sorted; `exclude` names more top-level paths to leave out."""
    skip_top = set(exclude)
    found = []
    for folder, dirs, files in os.walk(root):
        at_top = Path(folder) == root
        dirs[:] = [d for d in dirs if d not in NEVER_INPUTS and not (at_top and d in skip_top)]
        found += [
            Path(folder, name)
            for name in files
            if name not in NEVER_INPUTS and not name.endswith(NEVER_SUFFIXES) and not (at_top and name in skip_top)
        ]
    return sorted(found)


def digest(root: Path, words: Iterable[str] = (), exclude: Iterable[str] = ()) -> str:
    """sha256 over each input file's path and content, then the words: any change to one changes it."""
    return files_digest(root, input_files(root, exclude), words)


def files_digest(root: Path, files: Iterable[Path], words: Iterable[str] = ()) -> str:
    """sha256 over each file's path (relative to root) and content, in the order given, then the words."""
    hasher = hashlib.sha256()
    for path in files:
        hasher.update(path.relative_to(root).as_posix().encode() + b"\0")
        hasher.update(hashlib.sha256(path.read_bytes()).digest())
    for word in words:
        hasher.update(b"\1" + word.encode())
    return hasher.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.build_inputs", description=__doc__.splitlines()[0])
    parser.add_argument("--exclude", action="append", default=[], help="a top-level path that is not an input")
    parser.add_argument("words", nargs="*", help="settings that change the output (stage, arguments, versions)")
    args = parser.parse_args(argv)
    print(digest(REPO_ROOT, args.words, args.exclude))
    return 0


if __name__ == "__main__":
    sys.exit(main())
