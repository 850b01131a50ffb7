"""Peak search for ``asrtk sweep``: a pure state machine fed with step results.

Like MLPerf LoadGen's peak search: raise the offered load geometrically until the SLO fails
(or throughput stops growing), then bisect between the last passing and the first failing
load. Each step runs long enough for the percentile it judges (at least ``tail_requests``
requests beyond it, i.e. ``tail_requests / (1 - p)`` in all); a step whose verdict lies
within noise (the confidence interval of the percentile straddles the SLO) is repeated once,
longer. No clock, no I/O: the runner asks :meth:`SweepSearch.next_step`, runs it, and feeds
the result to :meth:`SweepSearch.record`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["rate", "users"]
Verdict = Literal["pass", "fail", "noisy"]
# a step's final word: "noisy" and "disturbed" steps were re-run and do not count
Final = Literal["pass", "fail", "noisy", "disturbed"]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class SweepPolicy:
    mode: Mode
    slo_latency_s: float
    slo_percentile: float = 0.95
    max_error_rate: float = 0.01
    start: float = 2.0
    growth: float = 2.0
    tolerance: float = 0.1
    step_duration_s: float = 20.0
    max_step_duration_s: float | None = None
    max_steps: int = 16
    max_repeats: int = 1
    # a step measured while the host was busy with other work is run again (up to this many times)
    disturbed_repeats: int = 1
    min_load: float | None = None
    max_load: float | None = None
    plateau_gain: float = 0.05
    saturation_ratio: float = 0.9
    tail_requests: int = 20
    # after the search: measure the curve at these fractions of the best load, where plans operate
    fill: tuple[float, ...] = (0.5, 0.7)

    def __post_init__(self) -> None:
        checks = [
            (self.mode in ("rate", "users"), f"mode must be 'rate' or 'users', got {self.mode!r}"),
            (self.slo_latency_s > 0, f"SLO latency must be > 0 s, got {self.slo_latency_s}"),
            (0.5 <= self.slo_percentile < 1.0, f"SLO percentile must be in [0.5, 1), got {self.slo_percentile}"),
            (0.0 <= self.max_error_rate < 1.0, f"max error rate must be in [0, 1), got {self.max_error_rate}"),
            (self.start > 0, f"start load must be > 0, got {self.start}"),
            (self.growth > 1.0, f"growth factor must be > 1, got {self.growth}"),
            (0.0 < self.tolerance < 1.0, f"tolerance must be in (0, 1), got {self.tolerance}"),
            (self.step_duration_s > 0, f"step duration must be > 0 s, got {self.step_duration_s}"),
            (self.max_steps >= 2, f"max steps must be >= 2, got {self.max_steps}"),
            (all(0 < f < 1 for f in self.fill), f"fill fractions must be in (0, 1), got {self.fill}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def step_cap_s(self) -> float:
        return self.max_step_duration_s or 3.0 * self.step_duration_s

    @property
    def floor_load(self) -> float:
        if self.min_load is not None:
            return self.min_load
        return 1.0 if self.mode == "users" else self.start / 32.0


@dataclass(frozen=True)
class StepPlan:
    index: int
    load: float
    duration_s: float
    phase: Literal["bracket", "descend", "bisect", "repeat", "fill"]


@dataclass(frozen=True)
class StepResult:
    load: float
    achieved_rps: float
    requests: int
    error_rate: float
    duration_s: float
    latency_s: dict[float, float]  # quantile -> seconds; must hold the judged percentile
    concurrency: float | None = None
    offered_rps: float | None = None  # what the schedule really sent (Poisson): the saturation reference
    disturbed: bool = False  # other work or CPU steal on the host during the step (summary host.disturbed)
    interference_cores: float | None = None  # how much: host.interference_cpu_cores_mean


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    latency_s: float
    latency_ci_s: tuple[float, float]
    needed_requests: int


@dataclass(frozen=True)
class SweepOutcome:
    status: Literal["converged", "not_bracketed", "slo_unreachable", "max_steps"]
    max_rps_at_slo: float | None
    ci_rps: tuple[float | None, float | None]
    best_index: int | None
    knee_load: tuple[float | None, float | None]
    note: str


@dataclass
class _Record:
    plan: StepPlan
    result: StepResult
    judgement: Judgement
    final: Final  # pass/fail after resolving noise


def required_requests(percentile: float, tail_requests: int = 20) -> int:
    """Requests a step needs so that ``tail_requests`` of them lie beyond the percentile."""
    return int(math.ceil(tail_requests / (1.0 - percentile) - 1e-9))


def quantile_rank_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Distribution-free CI of the p-quantile, as quantile levels (normal approx. to the binomial rank)."""
    if n <= 0:
        return 0.0, 1.0
    half = z * math.sqrt(p * (1.0 - p) / n)
    return max(0.0, p - half), min(0.9999, p + half)


def interpolate_quantile(latency_s: dict[float, float], q: float) -> float:
    """Latency at quantile q from known quantiles, linear in -log(1 - q); clamped at the ends."""
    pts = sorted((k, v) for k, v in latency_s.items() if v is not None and math.isfinite(v))
    if not pts:
        raise ValueError("no latency quantiles to interpolate")
    xs = [-math.log(1.0 - min(k, 0.999999)) for k, _ in pts]
    x = -math.log(1.0 - min(q, 0.999999))
    if x <= xs[0]:
        return pts[0][1]
    if x >= xs[-1]:
        return pts[-1][1]
    for i in range(1, len(pts)):
        if x <= xs[i]:
            f = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            return pts[i - 1][1] + f * (pts[i][1] - pts[i - 1][1])
    return pts[-1][1]


def judge(policy: SweepPolicy, result: StepResult) -> Judgement:
    """Pass, fail or noisy for one step, from the SLO, the error budget and saturation."""
    p = policy.slo_percentile
    needed = required_requests(p, policy.tail_requests)
    if result.requests <= 0:
        return Judgement("fail", "no requests completed", math.inf, (math.inf, math.inf), needed)
    lat = interpolate_quantile(result.latency_s, p)
    p_lo, p_hi = quantile_rank_interval(p, result.requests)
    ci = (interpolate_quantile(result.latency_s, p_lo), interpolate_quantile(result.latency_s, p_hi))
    pct = f"p{p * 100:g}"
    if result.error_rate > policy.max_error_rate:
        return Judgement(
            "fail", f"error rate {result.error_rate:.2%} > {policy.max_error_rate:.2%}", lat, ci, needed
        )
    offered = result.offered_rps or result.load
    if policy.mode == "rate" and result.achieved_rps < policy.saturation_ratio * offered:
        return Judgement(
            "fail",
            f"achieved {result.achieved_rps:.3g} of {offered:.3g} rps offered: the target cannot keep up",
            lat, ci, needed,
        )
    if ci[1] <= policy.slo_latency_s:
        return Judgement("pass", f"{pct} {lat:.3g}s <= {policy.slo_latency_s:g}s", lat, ci, needed)
    if ci[0] > policy.slo_latency_s:
        return Judgement("fail", f"{pct} {lat:.3g}s > {policy.slo_latency_s:g}s", lat, ci, needed)
    return Judgement(
        "noisy",
        f"{pct} {lat:.3g}s, 95% CI [{ci[0]:.3g}, {ci[1]:.3g}]s straddles the SLO {policy.slo_latency_s:g}s "
        f"({result.requests} requests)",
        lat, ci, needed,
    )


@dataclass
class SweepSearch:
    policy: SweepPolicy
    records: list[_Record] = field(default_factory=list)
    _pending: StepPlan | None = None
    _done_reason: str | None = None  # why the search ended (fill steps may still follow)
    _fill: list[float] | None = None

    # -- state ------------------------------------------------------------------------------
    @property
    def lo(self) -> float | None:
        """Highest load that passed."""
        passes = [r.plan.load for r in self.records if r.final == "pass" and r.plan.phase != "fill"]
        return max(passes) if passes else None

    @property
    def hi(self) -> float | None:
        """Lowest load that failed."""
        fails = [r.plan.load for r in self.records if r.final == "fail" and r.plan.phase != "fill"]
        return min(fails) if fails else None

    @property
    def done(self) -> bool:
        return self._done_reason is not None and self._fill == [] and self._pending is None

    def _users(self) -> bool:
        return self.policy.mode == "users"

    def _norm(self, load: float) -> float:
        return float(max(1, int(round(load)))) if self._users() else float(load)

    def _narrow_enough(self, lo: float, hi: float) -> bool:
        if self._users() and hi - lo <= 1:
            return True
        return (hi - lo) / lo <= self.policy.tolerance

    def _duration(self, load: float) -> float:
        p = self.policy
        needed = required_requests(p.slo_percentile, p.tail_requests)
        rps = self._expected_rps(load)
        want = needed / rps if rps and rps > 0 else p.step_duration_s
        return float(min(max(want, p.step_duration_s), p.step_cap_s))

    def _expected_rps(self, load: float) -> float | None:
        if not self._users():
            return load
        per_user = [r.result.achieved_rps / r.plan.load for r in self.records if r.plan.load > 0]
        return min(per_user[-1] * load, max(r.result.achieved_rps for r in self.records)) if per_user else None

    # -- transitions --------------------------------------------------------------------------
    def next_step(self) -> StepPlan | None:
        if self._pending is not None:
            return self._pending
        if self._done_reason is None:
            plan = self._search_step()
            if plan is not None:
                return plan
        return self._fill_step()

    def _fill_step(self) -> StepPlan | None:
        """Curve points below the knee (they do not change the search's answer)."""
        if self._fill is None:
            best = self.best()
            self._fill = []
            if best is not None:
                # a short search step at the same load does not count: fills are the long measurements
                for f in self.policy.fill:
                    load = self._norm(best.plan.load * f)
                    if load >= self.policy.floor_load and load not in self._fill:
                        self._fill.append(load)
        if not self._fill:
            return None
        load = self._fill.pop(0)
        # plans are read off these points: measure them over twice the longest step, so that a
        # transient (a neighbour's burst of CPU) cannot dominate the percentile; never repeated
        dur = 2.0 * self.policy.step_cap_s
        plan = StepPlan(len(self.records), load, dur, "fill")
        self._pending = plan
        return plan

    def _search_step(self) -> StepPlan | None:
        p = self.policy
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None and (hi <= lo or self._narrow_enough(lo, hi)):
            self._done_reason = "converged"
            return None
        if sum(1 for r in self.records if r.final != "disturbed") >= p.max_steps:
            self._done_reason = "max_steps"
            return None
        index = len(self.records)
        if not self.records:
            load, phase = self._norm(p.start), "bracket"
        elif hi is None:
            assert lo is not None
            nxt = self._norm(max(lo * p.growth, lo + 1) if self._users() else lo * p.growth)
            if p.max_load is not None and nxt > p.max_load:
                if lo >= p.max_load:
                    self._done_reason = "not_bracketed"
                    return None
                nxt = self._norm(p.max_load)
            load, phase = nxt, "bracket"
        elif lo is None:
            nxt = self._norm(hi / p.growth)
            if nxt < p.floor_load - 1e-12 or (self._users() and nxt >= hi):
                self._done_reason = "slo_unreachable"
                return None
            load, phase = nxt, "descend"
        else:
            if hi <= lo or self._narrow_enough(lo, hi):
                self._done_reason = "converged"
                return None
            load = float((int(lo) + int(hi)) // 2) if self._users() else 0.5 * (lo + hi)
            phase = "bisect"
        plan = StepPlan(index, load, self._duration(load), phase)  # type: ignore[arg-type]
        self._pending = plan
        return plan

    def _plateaued(self) -> bool:
        if not self._users() or len(self.records) < 2:
            return False
        last = self.records[-1]
        prev = next((r for r in reversed(self.records[:-1]) if r.final == "pass"), None)
        if prev is None or last.plan.load <= prev.plan.load or last.final != "pass":
            return False
        load_gain = last.plan.load / prev.plan.load - 1.0
        tput_gain = last.result.achieved_rps / max(prev.result.achieved_rps, 1e-12) - 1.0
        return tput_gain < self.policy.plateau_gain * load_gain / (self.policy.growth - 1.0)

    def record(self, result: StepResult) -> Judgement:
        """Feed the result of the step :meth:`next_step` returned last."""
        plan = self._pending
        if plan is None:
            raise RuntimeError("record() called without a pending step")
        j = judge(self.policy, result)
        self._pending = None
        counting: _Record | None = None  # an earlier measurement of this load that counts instead
        if result.disturbed:
            earlier = [r for r in self.records if r.plan.load == plan.load and r.final == "disturbed"]
            if len(earlier) < self.policy.disturbed_repeats:
                # measured while something else used the CPU: keep it for the report, measure again
                self.records.append(_Record(plan, result, j, "disturbed"))
                phase = "fill" if plan.phase == "fill" else "repeat"
                self._pending = StepPlan(len(self.records), plan.load, plan.duration_s, phase)
                return j
            # disturbed every time (bounded): the measurement taken on the quietest host counts
            known = [r for r in earlier if r.result.interference_cores is not None]
            quietest = min(known, key=lambda r: r.result.interference_cores or 0.0, default=None)
            if (quietest is not None and result.interference_cores is not None
                    and quietest.result.interference_cores < result.interference_cores):  # type: ignore[operator]
                self.records.append(_Record(plan, result, j, "disturbed"))
                counting = quietest
                result, j = quietest.result, quietest.judgement
        repeats = sum(1 for r in self.records if r.plan.load == plan.load and r.final == "noisy")
        if j.verdict == "noisy" and repeats < self.policy.max_repeats and plan.phase != "fill":
            # keep the noisy record for the report but do not let it decide; re-run longer
            if counting is not None:
                counting.final = "noisy"
            else:
                self.records.append(_Record(plan, result, j, "noisy"))
            needed_s = j.needed_requests / max(result.achieved_rps, 1e-9)
            dur = min(max(2.0 * plan.duration_s, needed_s), 2.0 * self.policy.step_cap_s)
            self._pending = StepPlan(len(self.records), plan.load, dur, "repeat")
            return j
        final: Final = j.verdict
        if final == "noisy":
            final = "pass" if j.latency_s <= self.policy.slo_latency_s else "fail"
        if counting is not None:
            counting.final = final  # a re-measurement (phase repeat or fill): no plateau check
            return j
        self.records.append(_Record(plan, result, j, final))
        if plan.phase == "bracket" and final == "pass" and self._plateaued():
            # throughput stopped growing: this step counts as the edge
            j = Judgement("fail", "throughput stopped growing", j.latency_s, j.latency_ci_s, j.needed_requests)
            self.records[-1].final = "fail"
            self.records[-1].judgement = j
        return j

    # -- result -------------------------------------------------------------------------------
    def best(self) -> _Record | None:
        """Rate mode: the highest offered rate that passed; users mode: the highest throughput that passed."""
        passes = [r for r in self.records if r.final == "pass" and r.plan.phase != "fill"]
        if not passes:
            return None
        if self._users():
            return max(passes, key=lambda r: r.result.achieved_rps)
        return max(passes, key=lambda r: (r.plan.load, r.plan.index))

    def _rps(self, r: _Record) -> float:
        # What the target really completed while meeting the SLO: a Poisson schedule realises more
        # or fewer arrivals than its nominal rate (and the same seed repeats the same luck per step).
        return r.result.achieved_rps

    def estimate(self) -> float | None:
        b = self.best()
        return self._rps(b) if b else None

    def outcome(self) -> SweepOutcome:
        status = self._done_reason or "max_steps"
        lo, hi = self.lo, self.hi
        best = self.best()
        if best is None:
            floor = min((r.plan.load for r in self.records), default=None)
            unit = "users" if self._users() else "rps"
            return SweepOutcome(
                "slo_unreachable", None, (None, None), None, (None, hi),
                f"the SLO failed at every load tried, down to {floor:g} {unit}" if floor is not None
                else "no step ran",
            )
        r = best.result
        point = self._rps(best)
        margin = Z95 * math.sqrt(max(r.requests, 1)) / max(r.duration_s, 1e-9)
        low = max(0.0, min(point, r.achieved_rps) - margin)
        if hi is None:
            return SweepOutcome(
                "not_bracketed" if status != "max_steps" else "max_steps", point, (low, None),
                self.records.index(best), (lo, None),
                f"the SLO never failed up to {lo:g} {'users' if self._users() else 'rps'}: capacity is at "
                f"least {point:.3g} rps (not extrapolated)",
            )
        fails = [x.result for x in self.records if x.final == "fail" and x.plan.load == hi]
        if self._users():
            upper = max((x.achieved_rps for x in fails), default=point)
        else:  # the SLO failed at what the schedule really offered there
            upper = min((x.offered_rps or x.load for x in fails), default=hi)
        upper = max(upper, point)
        note = f"knee between {lo:g} and {hi:g} {'users' if self._users() else 'rps offered'}"
        if status == "max_steps":
            note += f"; stopped after {self.policy.max_steps} steps before reaching the tolerance"
        return SweepOutcome(
            "converged" if status == "converged" else status, point, (low, upper),
            self.records.index(best), (lo, hi), note,
        )
