"""The benchmark report: goals check and Markdown table from a results document."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.common import milli, percentile
from benchmarks.drain import DrainRun, summarize
from benchmarks.report import goals, markdown, write


def _run(contender: str, rate: float | None, pack: int = 1, ok: bool = True) -> DrainRun:
    return DrainRun(contender, pack, 0, 1000, 1000, ok, True if ok else None, rate,
                    rate, 1.0, 2.0, 1000 if ok else 10, 50 * 2**20, None)


def _results() -> dict[str, object]:
    runs = [_run("raw_floor", 100_000.0), _run("meterstream", 60_000.0),
            _run("naive_faust", 10_000.0), _run("quix", None, ok=False)]
    return {
        "mode": "quick", "machine": {"cpus": 2},
        "drain": {"summary": summarize(runs), "runs": [], "workloads": []},
        "latency": {"runs": [{"offered_rate": 10_000, "achieved_offered_rate": 9_990.0,
                              "worker_rate_during_load": 9_000.0, "backlog_at_load_end": 5,
                              "alerts_received": 9, "alerts_expected": 10, "alerts_missing": 1,
                              "missing_latency_at_least_ms": 3000, "all_alerts_received": False,
                              "p50_ms": 20.0, "p99_ms": 90.0, "max_ms": 95.0,
                              "caught_up_after_load_ms": 30, "series": []}]},
        "scale": {"runs": [], "rss_growth_max_over_min": 1.1},
    }


def test_summary_ratios_use_the_same_run() -> None:
    rows = {r["contender"]: r for r in summarize(
        [_run("raw_floor", 100_000.0), _run("meterstream", 60_000.0),
         _run("naive_faust", 10_000.0)])}
    assert rows["meterstream"]["ratio_to_raw_floor"] == pytest.approx(0.6)
    assert rows["naive_faust"]["meterstream_over_this"] == pytest.approx(6.0)


def test_goals_report_misses_and_unfinished_runs() -> None:
    by_goal = {(g["goal"]): g for g in goals(_results())}
    assert by_goal["drain_vs_raw_floor"]["met"] is True
    assert by_goal["drain_vs_naive_faust"]["met"] is True
    assert by_goal["drain_vs_quix"]["met"] is False  # quix never finished: no ratio
    assert by_goal["events_per_s_per_process"]["met"] is False
    # p99 under target but an alert is missing: a lower bound, not a pass
    assert by_goal["alert_p99_ms_at_10k"]["met"] is False
    assert by_goal["rss_growth_max_over_min"]["met"] is True


def test_latency_goals_need_every_event_processed_within_the_bound() -> None:
    """p99 under the bound is not enough: the issue asks for no backlog at the end, read as
    every event sent processed within the same bound after the load stopped."""
    def run(rate: int, p99: float, caught_up_ms: int | None) -> dict[str, object]:
        return {"offered_rate": rate, "all_alerts_received": True, "p99_ms": p99,
                "caught_up_after_load_ms": caught_up_ms}

    def met(*runs: dict[str, object]) -> dict[str, bool]:
        return {g["goal"]: g["met"] for g in goals({"latency": {"runs": list(runs)}})}

    assert met(run(10_000, 90.0, 40), run(50_000, 555.0, 300)) == {
        "alert_p99_ms_at_10k": True, "alert_p99_ms_at_50k": True}
    # a backlog that took 2.5 s to clear after the load stopped
    assert met(run(50_000, 555.0, 2_500))["alert_p99_ms_at_50k"] is False
    # never caught up within the wait
    assert met(run(50_000, 555.0, None))["alert_p99_ms_at_50k"] is False
    assert met(run(50_000, 1_200.0, 100))["alert_p99_ms_at_50k"] is False


def test_markdown_table_and_files(tmp_path: Path) -> None:
    results = _results()
    results["goals"] = goals(results)
    md = markdown(results)
    assert "| single | meterstream | 60,000 | 0.6000 |" in md
    assert "not done" in md
    assert "9/10 (missing ones >= 3,000 ms)" in md
    write(_results(), tmp_path)
    assert (tmp_path / "results.json").exists() and (tmp_path / "results.md").exists()
    assert (tmp_path / "drain.png").exists() and (tmp_path / "latency.png").exists()


def test_helpers() -> None:
    assert milli("12.5") == 12_500 and milli("0.005") == 5 and milli("7") == 7_000
    with pytest.raises(ValueError):
        milli("1.2345")
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_core_ratio_pairs_each_repeat_with_its_own_floor() -> None:
    """A machine that slows down mid-run moves a contender and the floor of one repeat
    together: the ratio is the median of per-repeat ratios, not a ratio of medians."""
    from benchmarks.core_bench import CoreRun
    from benchmarks.core_bench import summarize as core_summary

    def run(contender: str, repeat: int, rate: float) -> CoreRun:
        return CoreRun(contender, 1, repeat, 1000, 1000, 1, True, rate, rate, rate, 1.0)

    # Repeat 0 on a fast machine, repeats 1 and 2 at half speed: each ratio is 0.25.
    runs = [run("decode_sum", 0, 400_000.0), run("core_rocksdict", 0, 100_000.0),
            run("decode_sum", 1, 200_000.0), run("core_rocksdict", 1, 50_000.0),
            run("decode_sum", 2, 200_000.0), run("core_rocksdict", 2, 50_000.0)]
    rows = {r["contender"]: r for r in core_summary(runs)}
    core = rows["core_rocksdict"]
    assert core["ratio_to_decode_sum"] == pytest.approx(0.25)
    assert core["ratio_to_decode_sum_runs"] == [0.25, 0.25, 0.25]
    assert core["events_per_s"] == 50_000.0  # the median rate is still reported
    assert rows["decode_sum"]["ratio_to_decode_sum"] == pytest.approx(1.0)


def test_core_goal_reads_the_interleaved_ratio_where_a_run_has_it() -> None:
    """The floor timed batch by batch beside the core: a slow spell that hit the core but
    not the floor's own run moves the sequential ratio, not the interleaved one."""
    from benchmarks.core_bench import CoreRun
    from benchmarks.core_bench import summarize as core_summary

    def run(contender: str, repeat: int, rate: float, floor_s: float | None) -> CoreRun:
        extra = {} if floor_s is None else {"interleaved_decode_sum_s": floor_s}
        return CoreRun(contender, 50, repeat, 1000, 1000, 1, True, rate, rate, rate,
                       1000 / rate, extra=extra)

    # Each repeat: the floor's own run at 400,000 events/s; the core at 100,000 in
    # repeat 0 and slowed to 50,000 by a slow spell in repeats 1 and 2. The interleaved
    # floor took 0.0025 s for the 1,000 events in repeat 0, and was slowed with the core
    # in repeats 1 and 2 (0.005 s, 0.008 s).
    runs = [run("decode_sum", 0, 400_000.0, None), run("core_rocksdict", 0, 100_000.0, 0.0025),
            run("decode_sum", 1, 400_000.0, None), run("core_rocksdict", 1, 50_000.0, 0.005),
            run("decode_sum", 2, 400_000.0, None), run("core_rocksdict", 2, 50_000.0, 0.008)]
    core = {r["contender"]: r for r in core_summary(runs)}["core_rocksdict"]
    assert core["ratio_to_decode_sum"] == pytest.approx(0.125)
    assert core["ratio_interleaved_runs"] == [0.25, 0.25, 0.4]
    assert core["ratio_interleaved"] == pytest.approx(0.25)
    by_goal = {g["goal"]: g for g in goals({"core": {"summary": [core]}})}
    assert by_goal["core_vs_decode_sum_packed"]["measured"] == pytest.approx(0.25)
    assert by_goal["core_vs_decode_sum_packed"]["met"] is False
    assert "| packed x50 | core_rocksdict | 50,000 | 0.125 | 0.250 |" in markdown(
        {"mode": "quick", "machine": {"cpus": 2},
         "core": {"summary": [core], "runs": [], "workloads": []}})


def test_core_section_goals_and_plot(tmp_path: Path) -> None:
    from benchmarks.core_bench import CoreRun
    from benchmarks.core_bench import summarize as core_summary

    def run(contender: str, pack: int, rate: float, ok: bool = True) -> CoreRun:
        return CoreRun(contender, pack, 0, 1000, 1000, 1, ok, rate, rate, rate, 1.0)

    summary = core_summary([
        run("decode_sum", 1, 400_000.0), run("core_rocksdict", 1, 100_000.0),
        run("core_memory", 1, 120_000.0), run("decode_sum", 50, 600_000.0),
        run("core_rocksdict", 50, 150_000.0, ok=False),
    ])
    results: dict[str, object] = {"mode": "quick", "machine": {"cpus": 2},
                                  "core": {"summary": summary, "runs": [], "workloads": []}}
    by_goal = {g["goal"]: g for g in goals(results)}
    assert by_goal["core_vs_decode_sum_single"]["measured"] == pytest.approx(0.25)
    assert by_goal["core_vs_decode_sum_single"]["met"] is True
    # 0.25 < 0.3, and its totals were wrong: not met either way
    assert by_goal["core_vs_decode_sum_packed"]["met"] is False
    assert "events_per_s_per_process" not in by_goal  # no drain in this run
    results["goals"] = goals(results)
    assert "| single | core_rocksdict | 100,000 | 0.250 | n/a |" in markdown(results)
    write(results, tmp_path)
    assert (tmp_path / "core.png").exists()


def test_cpu_meter_reads_cores_from_proc() -> None:
    import os
    import time

    from benchmarks.latency import _CpuMeter

    meter = _CpuMeter(os.getpid(), None)
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # this process busy for 0.2 CPU s
        pass
    cores = meter.cores()
    assert cores["broker"] is None  # no broker pid given: no figure, not a zero
    worker, harness = cores["worker"], cores["harness"]
    assert worker is not None and 0.5 < worker <= 1.2  # the same process, read from /proc
    assert 0.5 < harness <= 1.2
