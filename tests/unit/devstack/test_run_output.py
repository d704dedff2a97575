"""`make run`'s output: a timed line per step, and a step that stays silent says it is still going."""

from __future__ import annotations

import io
import re
import threading

from devstack.run_output import RunOutput


def test_a_step_ends_with_its_time():
    # GIVEN make run's output
    out = io.StringIO()
    run = RunOutput(out)

    # WHEN a step runs
    with run.step("migrate"):
        pass
    run.close()

    # THEN one line says it and its time
    assert re.fullmatch(r"run: migrate \.\.\. \d+\.\d s\n", out.getvalue())


def test_a_silent_step_says_it_is_still_going():
    # GIVEN an output that calls silence after 0.2 s
    out = io.StringIO()
    run = RunOutput(out, silence_seconds=0.2)
    said = threading.Event()

    # WHEN a step prints nothing until the output has said something on its own
    with run.step("migrate"):
        for _ in range(100):
            if "still going" in out.getvalue():
                said.set()
                break
            said.wait(0.1)
    run.close()

    # THEN it said the step is still going before the step ended
    assert said.is_set()
    assert out.getvalue().splitlines()[0].startswith("run: migrate still going (")
