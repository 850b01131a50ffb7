"""``asrtk gate``: the statistics, the verdict and the orchestration, in virtual time.

Runs are real run directories written by the real bench orchestrator on a MockTransport and a
VirtualClock (see test_bench_run.py): a handler draws each request's service time from a known
lognormal distribution, so a "slower build" is the same distribution scaled.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.engine.clock import VirtualClock
from toolkit.engine.transport import MockTransport
from toolkit.errors import NoDataError, UsageError
from toolkit.gate import stats
from toolkit.gate.expr import FIGURES, parse_threshold
from toolkit.gate.judge import RunData, judge
from toolkit.gate.model import exit_code
from toolkit.recorder import new_histogram
from toolkit.runs.bench import BenchConfig, BenchSeams, run_bench
from toolkit.runs.gate import GateConfig, load_run, run_gate
from toolkit.samplers import GpuSampler, HostSampler, Telemetry
from toolkit.scenario import load_scenario
from toolkit.thresholds import Thresholds


# -- statistics ------------------------------------------------------------------------------

def _hist(values_s):
    h = new_histogram()
    for v in values_s:
        h.record_value(int(v * 1e6))
    return h


def _lognormal(n: int, median_s: float, sigma: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [median_s * math.exp(sigma * rng.gauss(0, 1)) for _ in range(n)]


def test_the_quantile_interval_covers_the_truth_at_its_confidence() -> None:
    """Of 200 samples of 1000 lognormal latencies, the 95% interval of p95 holds the true p95
    in about 95% (order statistics: exact coverage up to the normal approximation)."""
    true_p95 = 0.1 * math.exp(0.3 * 1.6448536)
    z = stats.z_of(0.95)
    covered = 0
    for seed in range(200):
        est = stats.quantile_estimate(_hist(_lognormal(1000, 0.1, 0.3, seed)), 0.95, z)
        lo, hi = est.interval(z)
        covered += lo <= true_p95 <= hi
    assert 180 <= covered <= 200, covered


def test_change_and_its_verdict() -> None:
    z = stats.z_of(0.95)
    base = stats.Estimate(0.100, 0.01)
    slower = stats.Estimate(0.120, 0.01)
    chg, ci = stats.change(slower, base, z)
    assert chg == pytest.approx(0.20)
    assert ci[0] == pytest.approx(math.expm1(math.log(1.2) - z * math.hypot(0.01, 0.01)))
    assert stats.verdict_of_change(ci, 0.05) == "fail"
    assert stats.verdict_of_change(stats.change(base, base, z)[1], 0.05) == "pass"
    assert stats.verdict_of_change(stats.change(stats.Estimate(0.104, 0.03), base, z)[1], 0.05) == "inconclusive"
    # throughput: higher is better, so a drop is the regression
    assert stats.change(stats.Estimate(80.0, 0.01), stats.Estimate(100.0, 0.01), z, higher_is_worse=False)[0] \
        == pytest.approx(0.25)


def test_between_run_noise_widens_the_error() -> None:
    sampling = stats.Estimate(0.1, 0.001, 10_000)
    assert stats.pooled(sampling, [0.1, 0.1]).log_se == 0.001  # two runs: no spread estimate
    wide = stats.pooled(sampling, [0.09, 0.1, 0.11])
    assert wide.log_se == pytest.approx(stats.between_runs_log_se([0.09, 0.1, 0.11])) and wide.log_se > 0.001


def test_ratio_estimate_of_cpu_per_request() -> None:
    cpu = [0.5] * 30
    ok = [50.0] * 30
    est = stats.ratio_estimate(cpu, ok)
    assert est.value == pytest.approx(0.01) and est.log_se == pytest.approx(stats.HDR_RESOLUTION / 2)
    assert stats.ratio_estimate(cpu[:20], ok[:20]).log_se is None  # two blocks: no error estimate


# -- thresholds ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "figure", "op", "value"), [
    ("p95<=1.2s", "p95", "<=", 1.2), ("p99 < 800ms", "p99", "<", 0.8), ("error_rate<=1%", "error_rate", "<=", 0.01),
    ("rps>=40", "rps", ">=", 40.0), ("cpu_per_request<=15ms", "cpu_per_request", "<=", 0.015),
    ("RTF_P95<=0.1", "rtf_p95", "<=", 0.1),
])
def test_threshold_expressions(text: str, figure: str, op: str, value: float) -> None:
    t = parse_threshold(text)
    assert (t.figure.name, t.op, t.value) == (figure, op, pytest.approx(value))


@pytest.mark.parametrize(("text", "message"), [
    ("p95=1s", "must look like"), ("p95x<=1s", "did you mean 'p95'"), ("p95<=fast", "duration"),
    ("error_rate<=150%", "between 0% and 100%"), ("rps>=-1", ">= 0"),
])
def test_bad_threshold_expressions_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_threshold(text)


# -- runs in virtual time ------------------------------------------------------------------------

class _QuietHost:
    def cpu_percent_per_core(self):
        return [20.0, 20.0]

    def memory_used_bytes(self):
        return 2**30

    def loadgen_cpu_percent(self):
        return [10.0]

    def target_cpu_percent(self):
        return None

    def cpu_split_cores(self):
        return (0.1, self.steal)

    def __init__(self, steal: float = 0.0) -> None:
        self.steal = steal


SCENARIO = """name: probe
protocol: {kind: http, method: POST, path: /work, body: none}
load: {mode: open, rate: 60}
duration_s: 20
warmup_s: 2
seed: 5
slo: {latency_s: 0.5, percentile: 0.95}
"""


def _virtual_bench(tmp_path: Path, scale: dict[str, float], steal: dict[str, float] | None = None):
    """A `bench` seam for run_gate: target name -> service-time scale; lognormal(50 ms, 0.3)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "probe.yaml").write_text(SCENARIO)
    counter = [0]

    def bench(cfg: GateConfig, target, label, say):
        counter[0] += 1
        rng = random.Random(1000 + counter[0])
        clock = VirtualClock(start=100.0)
        k = scale[target]

        def handler(req):
            clock.sleep(k * 0.05 * math.exp(0.3 * rng.gauss(0, 1)))
            return 200

        host = _QuietHost((steal or {}).get(target, 0.0))
        seams = BenchSeams(
            transport=lambda plan: MockTransport(handler), clock=clock, preflight=lambda b, h: 200,
            has_metrics=lambda b, h: False,
            telemetry=lambda b, s, u: Telemetry(HostSampler(host), GpuSampler(read=lambda: []), []),
            now=lambda: datetime(2026, 12, 2, 12, 0, counter[0], tzinfo=timezone.utc))
        sc = load_scenario(str(tmp_path / "probe.yaml"))
        return run_bench(BenchConfig(scenario=sc, target=f"http://{target}.invalid", out_dir=cfg.out_dir,
                                     live=False, quiet=False, thresholds=Thresholds(), label=label), seams).run_dir

    return bench


def _ab(tmp_path: Path, new_scale: float, **kw) -> tuple:
    bench = _virtual_bench(tmp_path, {"old": 1.0, "new": new_scale}, kw.pop("steal", None))
    cfg = GateConfig(scenario=str(tmp_path / "probe.yaml"), target="new", baseline_target="old",
                     out_dir=tmp_path / "results", **kw)
    return run_gate(cfg, say=lambda m: None, bench=bench), cfg


def test_ab_gate_passes_identical_builds_and_fails_a_slower_one(tmp_path: Path) -> None:
    same, _ = _ab(tmp_path / "same", 1.0, max_runs=3)
    assert same.verdict in ("pass", "inconclusive") and same.mode == "ab"
    assert [c.name for c in same.checks] == ["p95 change"]
    slower, _ = _ab(tmp_path / "slow", 1.25, max_runs=3)
    assert slower.verdict == "fail" and slower.exit_code == 3, slower.checks
    [c] = slower.checks
    assert c.change == pytest.approx(0.25, abs=0.08) and c.ci[0] > 0.05
    # every run is a real run directory, baseline first in each pair
    assert len(slower.baselines) == len(slower.runs) >= 1
    assert all((Path(r.path) / "summary.json").exists() for r in slower.runs + slower.baselines)


def test_an_inconclusive_comparison_measures_again_up_to_max_runs(tmp_path: Path) -> None:
    res, _ = _ab(tmp_path, 1.05, max_runs=2, max_regression=0.05)
    # a 5% slowdown against a 5% tolerance can never be told apart: both pairs run, then inconclusive
    assert res.verdict == "inconclusive" and len(res.runs) == 2 and res.exit_code == 4
    assert exit_code("inconclusive", "fail") == 3 and exit_code("inconclusive", "pass") == 0


def test_a_disturbed_run_is_not_compared(tmp_path: Path) -> None:
    res, _ = _ab(tmp_path, 1.5, max_runs=1, steal={"new": 0.6})
    assert res.verdict == "inconclusive" and not res.checks
    assert any("the host was disturbed" in r for r in res.reasons)


def test_thresholds_and_a_baseline_directory_without_load(tmp_path: Path) -> None:
    bench = _virtual_bench(tmp_path, {"old": 1.0, "new": 1.3})
    cfg0 = GateConfig(out_dir=tmp_path / "results")
    old, new = bench(cfg0, "old", "a", None), bench(cfg0, "new", "b", None)
    res = run_gate(GateConfig(current=[new], baseline=[str(old)], out_dir=tmp_path / "results",
                              thresholds=[parse_threshold("p95<=1s"), parse_threshold("error_rate<=1%"),
                                          parse_threshold("rps>=70")]), say=lambda m: None)
    by = {c.name: c for c in res.checks}
    assert by["p95<=1s"].verdict == "pass" and by["error_rate<=1%"].verdict == "pass"
    assert by["rps>=70"].verdict == "fail" and by["rps>=70"].measured == pytest.approx(60, rel=0.15)
    assert by["p95 change"].verdict == "fail"
    assert res.verdict == "fail" and res.exit_code == 3
    # by run id under --out, too
    again = run_gate(GateConfig(current=[new], baseline=[old.name], out_dir=tmp_path / "results"), say=lambda m: None)
    assert again.baselines[0].run_id == old.name
    with pytest.raises(NoDataError, match="no run directory"):
        run_gate(GateConfig(current=[new], baseline=["nope"], out_dir=tmp_path / "results"), say=lambda m: None)


def test_runs_measured_differently_are_not_compared(tmp_path: Path) -> None:
    bench = _virtual_bench(tmp_path, {"old": 1.0})
    d = bench(GateConfig(out_dir=tmp_path / "r"), "old", "a", None)
    run = load_run(d)
    other = RunData(summary={**run.summary, "load": {**run.summary["load"], "stages": [{"rate": 30}]}},
                    path=run.path, latency=run.latency)
    res = judge([run], [other])
    assert res.verdict == "inconclusive" and res.reasons[0].startswith("not like for like: load")


@pytest.mark.parametrize(("kw", "message"), [
    ({}, "give --scenario"),
    ({"current": [Path("x")], "scenario": "emotion"}, "cannot be combined with --scenario"),
    ({"scenario": "emotion"}, "nothing to judge"),
    ({"scenario": "emotion", "baseline": ["x"], "baseline_target": "http://a"}, "cannot be combined with --baseline"),
])
def test_usage_errors(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run_gate(GateConfig(out_dir=tmp_path, **kw), say=lambda m: None)


def test_the_cli_judges_two_run_directories(tmp_path: Path) -> None:
    from toolkit.cli.main import app

    bench = _virtual_bench(tmp_path, {"old": 1.0, "new": 1.3})
    cfg0 = GateConfig(out_dir=tmp_path / "results")
    old, new = bench(cfg0, "old", "a", None), bench(cfg0, "new", "b", None)
    r = CliRunner().invoke(app, ["gate", "--current", str(new), "--baseline", str(old), "--out",
                                 str(tmp_path / "results")])
    assert r.exit_code == 3, r.output
    assert "p95 change" in r.output and "FAIL" in r.output
    # ~1,200 requests a side: p95's interval is about +-7%, so against itself a run is within 10%
    # but not provably within 5% (inconclusive: exit 4, or whatever --inconclusive says)
    same = ["gate", "--current", str(old), "--baseline", str(old), "--out", str(tmp_path / "results")]
    r = CliRunner().invoke(app, same)
    assert r.exit_code == 4 and "straddles" not in r.output and "INCONCLUSIVE" in r.output, r.output
    assert CliRunner().invoke(app, [*same, "--inconclusive", "pass"]).exit_code == 0
    r = CliRunner().invoke(app, [*same, "--max-regression", "10%"])
    assert r.exit_code == 0 and "PASS" in r.output, r.output
    r = CliRunner().invoke(app, ["gate", "--current", str(new), "--baseline", str(old), "--compare", "rps"])
    assert r.exit_code == 2 and "cannot be compared" in r.output


def test_cpu_per_request_is_compared_when_asked(tmp_path: Path) -> None:
    """A build that costs 20% more CPU a request fails on that figure even when latency is equal."""
    bench = _virtual_bench(tmp_path, {"old": 1.0})
    run = load_run(bench(GateConfig(out_dir=tmp_path / "r"), "old", "a", None))
    rng = random.Random(3)

    def with_cpu(per_request: float) -> RunData:
        ok = [60.0] * 30
        cpu = [per_request * n * (1 + 0.01 * rng.gauss(0, 1)) for n in ok]
        return RunData(summary=run.summary, path=run.path, latency=run.latency, cpu_s=cpu, ok=ok)

    res = judge([with_cpu(0.012)], [with_cpu(0.010)], compare=[FIGURES["p95"], FIGURES["cpu_per_request"]],
                max_regression=0.05)
    by = {c.name: c for c in res.checks}
    assert by["cpu_per_request change"].verdict == "fail"
    assert by["cpu_per_request change"].change == pytest.approx(0.2, abs=0.02)
    assert by["p95 change"].verdict in ("pass", "inconclusive") and res.verdict == "fail"


def test_a_baseline_from_the_history_of_another_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """main's run is recorded in the history; its run directory is not on this machine (another
    CI runner): the summary and latency histogram the history keeps are enough for the gate."""
    import shutil

    import toolkit.history as history

    monkeypatch.setattr(history, "git_info", lambda cwd, env=None: {"commit": "abc123", "branch": "main",
                                                                   "source": "test"})
    monkeypatch.delenv("ASRTK_HISTORY_URL", raising=False)
    bench = _virtual_bench(tmp_path, {"old": 1.0, "new": 1.3})
    out = tmp_path / "results"
    main_run = bench(GateConfig(out_dir=out), "old", "main", None)  # recorded in out/history.sqlite
    shutil.rmtree(main_run)
    res = run_gate(GateConfig(scenario=str(tmp_path / "probe.yaml"), target="new", baseline=["history:main"],
                              out_dir=out, max_runs=1), say=lambda m: None, bench=bench)
    assert res.baselines[0].path == f"history:{main_run.name}" and res.baselines[0].git_commit == "abc123"
    assert res.verdict == "fail" and res.checks[0].change == pytest.approx(0.3, abs=0.08)
    with history.open_history(None, out) as h:
        gates = h.runs(kind="gate")
    assert [g.gate_verdict for g in gates] == ["fail"]
    with pytest.raises(NoDataError, match="no trusted run of scenario 'probe' on branch 'release'"):
        run_gate(GateConfig(scenario=str(tmp_path / "probe.yaml"), target="new", baseline=["history:release"],
                            out_dir=out), say=lambda m: None, bench=bench)


def test_a_build_that_fails_every_request_is_a_failed_run_not_a_verdict(tmp_path: Path) -> None:
    from toolkit.errors import AsrtkError

    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "probe.yaml").write_text(SCENARIO)

    def broken(cfg, target, label, say):
        clock = VirtualClock(start=100.0)

        def handler(req):
            clock.sleep(0.001)
            return 501

        seams = BenchSeams(transport=lambda plan: MockTransport(handler), clock=clock, preflight=lambda b, h: 200,
                           has_metrics=lambda b, h: False,
                           telemetry=lambda b, s, u: Telemetry(HostSampler(_QuietHost()), GpuSampler(read=lambda: []), []))
        return run_bench(BenchConfig(scenario=load_scenario(str(tmp_path / "probe.yaml")), target="http://x.invalid",
                                     out_dir=cfg.out_dir, live=False, quiet=False), seams).run_dir

    with pytest.raises(AsrtkError, match=r"gate: the current 1 run failed: no request succeeded .* http_501") as e:
        run_gate(GateConfig(scenario=str(tmp_path / "probe.yaml"), target="new", thresholds=[parse_threshold("p95<=1s")],
                            out_dir=tmp_path / "results"), say=lambda m: None, bench=broken)
    assert e.value.exit_code == 1
