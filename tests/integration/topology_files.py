"""Write a worker topology file: the test topology with some queues' numbers changed (same names, routes)."""

from __future__ import annotations

from pathlib import Path

import yaml

from core.topology import load_topology, topology_path


def write_topology(directory: Path, **queue_numbers: dict[str, int]) -> Path:
    """The test topology with e.g. `default={"time_limit": 4}` laid over it, checked as a worker would,
    written to `directory`; pass the path to a worker as QUEUE_TOPOLOGY."""
    raw = yaml.safe_load(topology_path().read_text())
    for key, numbers in queue_numbers.items():
        raw["queues"][key].update(numbers)
    path = directory / "queues.worker.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_topology(path)  # refuse here, not in a worker that never gets ready
    return path
