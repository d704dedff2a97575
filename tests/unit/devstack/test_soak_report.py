"""The soak's verdict (lost, duplicate effects) and its last line, which tests and the README read."""

from __future__ import annotations

from devstack.soak_report import EXPIRED_MARK, FIELDS, HOP_MARK, count_log_lines, last_line, parse_last_line, verdict


def test_last_line_round_trips_every_field_in_order():
    # GIVEN a count for every field
    counts = {name: n for n, name in enumerate(FIELDS)}
    # WHEN it is printed and read back
    line = last_line(counts)
    # THEN the shape is the agreed one and nothing is lost on the way
    assert line.startswith("soak: tasks=0 kills=1 pauses=2 faults=3 hops=4 expired=5 dlq=6 executions=7 lost=8 ")
    assert line.endswith(" duplicate_effects=9")
    assert parse_last_line(line) == counts


def test_the_old_shape_is_not_mistaken_for_the_new_one():
    assert parse_last_line("soak: tasks=150 kills=12 executions=170 lost=0 duplicate_effects=0") is None


def test_verdict_counts_silent_losses_and_extra_effects_only():
    # GIVEN tasks to run once (a..e) and expired ones that must not run (x, y, z)
    expected = {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "x": 0, "y": 0, "z": 0}
    effects = {"a": 1, "b": 3, "z": 1}  # b ran three times, z ran although it had expired
    # WHEN c is in the DLQ and x was recorded as discarded
    lost, duplicates = verdict(expected, effects, in_dlq={"c"}, recorded={"x"})
    # THEN lost: d and e (no effect, nowhere), y (expired without a record); duplicates: b's two extra, z's one
    assert (lost, duplicates) == (3, 3)


def test_count_log_lines_counts_marked_lines_across_logs(tmp_path):
    # GIVEN two worker logs in the workers' format, with the hop's failure lines that are not hops
    first = tmp_path / "worker-0.log"
    first.write_text(
        f"2026-12-02 00:00:01,000 WARNING workers.eta_hop 11 {HOP_MARK}jobs.x[1] due ..., sent back\n"
        "2026-12-02 00:00:02,000 WARNING workers.eta_hop 11 eta hop failed on queue default: ...\n"
        f"2026-12-02 00:00:03,000 WARNING workers.discards 11 {EXPIRED_MARK}jobs.x[2] ...\n"
    )
    second = tmp_path / "worker-1.log"
    second.write_text(f"2026-12-02 00:00:04,000 WARNING workers.eta_hop 12 {HOP_MARK}jobs.x[3] due ...\n")
    # WHEN counted
    # THEN each mark is counted once per line that has it
    assert count_log_lines([first, second], HOP_MARK) == 2
    assert count_log_lines([first, second], EXPIRED_MARK) == 1
    assert count_log_lines([first, second], HOP_MARK, EXPIRED_MARK) == 3
