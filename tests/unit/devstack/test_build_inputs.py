"""The inputs hash that lets bin/synth and bin/package-lambdas skip an unchanged build: any input change moves it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.build_inputs import REPO_ROOT, digest, input_files


@pytest.fixture
def repo(tmp_path) -> Path:
    """A small repository: code, config, and what is never an input (tests, docs, caches, build outputs)."""
    for name, text in {
        "workers/topology.py": "A = 1\n",
        "infra/app.py": "B = 2\n",
        "queues.yml": "queues: {}\n",
        "tests/test_x.py": "def test(): pass\n",
        "bench/run.py": "",
        "README.md": "# docs\n",
        "workers/__pycache__/topology.cpython-312.pyc": "x",
        "cdk.out/.inputs.sha256": "old\n",
        "node_modules/pkg/index.js": "",
        ".venv/bin/python": "",
    }.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_changed_input_file_changes_the_hash(repo):
    # GIVEN the hash of a repository
    before = digest(repo)
    # WHEN one input file changes
    (repo / "workers" / "topology.py").write_text("A = 2\n")
    # THEN the hash changes (the build runs again), and changing it back restores it
    assert digest(repo) != before
    (repo / "workers" / "topology.py").write_text("A = 1\n")
    assert digest(repo) == before


def test_an_added_removed_or_renamed_input_changes_the_hash(repo):
    before = digest(repo)
    # WHEN a file is added THEN the hash changes
    (repo / "workers" / "new.py").write_text("")
    assert digest(repo) != before
    # WHEN it is removed again THEN the hash is back; WHEN a file is renamed THEN it changes
    (repo / "workers" / "new.py").unlink()
    assert digest(repo) == before
    (repo / "queues.yml").rename(repo / "queues2.yml")
    assert digest(repo) != before


def test_the_settings_words_are_inputs_too(repo):
    # GIVEN the same files  WHEN the stage, the arguments or a tool version differ  THEN so does the hash
    assert digest(repo, ["stage=dev"]) != digest(repo, ["stage=prod"])
    assert digest(repo, ["node v20"]) != digest(repo, ["node v22"])
    assert digest(repo, ["a", "b"]) != digest(repo, ["ab"])


def test_tests_docs_caches_and_outputs_are_not_inputs(repo):
    # GIVEN the hash of a repository
    before = digest(repo)
    # WHEN only tests, benchmarks, docs, bytecode, build outputs or installed packages change
    for name in ("tests/test_x.py", "bench/run.py", "README.md", "workers/__pycache__/topology.cpython-312.pyc",
                 "cdk.out/.inputs.sha256", "node_modules/pkg/index.js", ".venv/bin/python"):  # fmt: skip
        (repo / name).write_text("changed")
    # THEN the hash is the same: no rebuild for them
    assert digest(repo) == before
    assert {p.relative_to(repo).as_posix() for p in input_files(repo)} == {
        "workers/topology.py",
        "infra/app.py",
        "queues.yml",
    }


def test_exclude_leaves_out_a_top_level_path(repo):
    # GIVEN infra/ excluded  WHEN a file in it changes  THEN the hash is the same
    before = digest(repo, exclude=["infra"])
    (repo / "infra" / "app.py").write_text("B = 3\n")
    assert digest(repo, exclude=["infra"]) == before


def test_the_repository_inputs_include_what_the_builds_read():
    # GIVEN this repository  WHEN its inputs are listed
    names = {p.relative_to(REPO_ROOT).as_posix() for p in input_files(REPO_ROOT)}
    # THEN the CDK app, the topology, the Lambda code, the image's files and the locks are among them
    for required in ("infra/app.py", "queues.yml", "serverless.yml", "Dockerfile", "uv.lock", "package-lock.json"):
        assert required in names, required
    assert any(n.startswith("lambdas/") for n in names) and any(n.startswith("workers/") for n in names)
