"""The live figures and the plain --quiet line, from recorded inputs."""

from __future__ import annotations

from types import SimpleNamespace

from toolkit.engine.live import plain_line, snapshot


class Agg:
    intervals = {"local": {0: {"errors": 1}, 1: {"errors": 2}}}

    def recent(self, now_s: float) -> dict:
        return {"offered_rps": 20.0, "achieved_rps": 19.5, "inflight": 3, "p50_s": 0.012, "p95_s": 0.04, "p99_s": 0.09}


def test_quiet_line_shows_rates_tail_errors_and_other_work_on_the_host() -> None:
    scen = SimpleNamespace(name="emotion", warmup_s=2.0)
    tel = SimpleNamespace(rows=[{"loadgen_cpu_percent": 31.0, "other_cpu_cores": 0.05, "steal_cpu_cores": 0.12,
                                 "gpu0_util_ratio": 0.5}])
    s = snapshot(scen, 30.0, Agg(), tel, 10.0)
    assert s["phase"] == "measure" and s["remaining_s"] == 20.0 and s["errors_total"] == 3
    assert abs(s["other_cores"] - 0.17) < 1e-9 and s["gpu_util"] == 0.5
    line = plain_line(s)
    assert "offered 20.00/s achieved 19.50/s" in line and "p95 40 ms" in line.replace(".0 ms", " ms")
    assert "loadgen-cpu 31%" in line and "other-work 0.17 cores" in line and "gpu 50%" in line
    # a remote-only or first sample: nothing known yet
    empty = snapshot(scen, 30.0, Agg(), SimpleNamespace(rows=[]), 1.0)
    assert empty["phase"] == "warm-up" and empty["other_cores"] is None and "other-work -" in plain_line(empty)
