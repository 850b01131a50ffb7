"""``asrtk plan validate`` as a library: run the planned per-node operating point against one
node (or the embedded server with the planned workers) and judge it against the plan
(:func:`toolkit.capacity.validation.judge_validation`), measuring again while the run is not
like for like with the sweep.

A plan sized for a result cache (``expected.cache``) needs repeated traffic: the scenario must
have a ``repeat`` block, and the embedded server runs with ``--cache`` (``memory:256MiB`` unless
told otherwise). Before the run, the scenario's expected hit ratio over it is compared with the
plan's hit rate (a warning names the catalog size that would give it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.capacity import planfile
from toolkit.capacity.validation import (Validation, judge_validation, unlikeness, validation_duration_s,
                                         work_per_request)
from toolkit.errors import ConfigError, UsageError

# the embedded server's cache for a plan with a hit rate: the reference server's default size,
# which holds every answer of the catalogs the scenarios use
DEFAULT_CACHE = "memory:256MiB"


def run_validation(
    plan_path: Path,
    target: str | None,
    *,
    preset: str = "tiny",
    duration_s: float | None = None,
    warmup_s: float = 3.0,
    tolerance: float = 0.2,
    out_dir: Path = Path("results"),
    scenario_name: str | None = None,
    attempts: int = 2,
    cache: str | None = None,
    on_message: Callable[[str], None] | None = None,
) -> Validation:
    # the plan, the scenario and the flags are checked before the process is patched
    from toolkit.scenario import load_scenario, with_overrides
    from toolkit.thresholds import from_env

    doc = planfile.read_plan(plan_path)
    thresholds = from_env()
    exp = doc.get("expected") or {}
    if not exp.get("per_node_rps"):
        raise ConfigError(f"plan {plan_path}: expected.per_node_rps is missing; write the plan with `asrtk plan`")
    scen_name = scenario_name or (doc.get("target") or {}).get("scenario")
    if not scen_name:
        raise ConfigError(f"plan {plan_path} names no scenario (target.scenario); pass --scenario NAME")
    if cache is not None and target is not None:
        raise UsageError("--cache configures the embedded server; a --target node runs with its own cache")
    per_node = float(exp["per_node_rps"])
    q = float((doc.get("slo") or {}).get("percentile", planfile.DEFAULTS["slo"]["percentile"]))
    dur = duration_s or validation_duration_s(per_node, q)
    scen = with_overrides(load_scenario(scen_name), rate=per_node, duration_s=dur, warmup_s=warmup_s)
    workers = (doc.get("recommended") or {}).get("workers_per_node") or 1
    server_args = [] if target else ["--model", preset, "--workers", str(workers)]
    say = on_message or (lambda m: None)
    plan_cache = exp.get("cache") or {}
    hit_rate = float(plan_cache.get("hit_rate") or 0.0)
    if hit_rate > 0:
        if not any(leaf.repeat is not None for leaf in scen.leaves()):
            raise UsageError(f"plan {plan_path} is sized for a {hit_rate:.0%} cache hit rate, but scenario "
                             f"{scen.name!r} sends no repeated requests: pass --scenario with a repeat: block "
                             "(e.g. repeat: {distribution: zipf, s: 1.1, catalog: 300}, see docs/scenarios.md)")
        say(_expectation_line(scen, hit_rate, float(plan_cache.get("hit_cost_ratio") or 0.0), per_node, dur,
                              warmup_s, thresholds.like_cpu_per_request, embedded=target is None))
    if target is None and (cache or hit_rate > 0):
        server_args += ["--cache", cache or DEFAULT_CACHE]

    import locust  # noqa: F401  - gevent monkey-patching before anything starts a thread

    from toolkit.runs.bench import BenchConfig, run_bench

    best = None
    for attempt in range(1, max(1, attempts) + 1):
        outcome = run_bench(BenchConfig(scenario=scen, target=target, server_args=server_args,
                                        out_dir=Path(out_dir), live=False, quiet=False, thresholds=thresholds,
                                        label=f"plan validate (attempt {attempt})" if attempt > 1 else "plan validate",
                                        # a plan's operating point, not the scenario's own load: kept out of
                                        # the history, where it would become a gate's baseline
                                        record_history=False))
        v = dataclasses.replace(judge_validation(doc, outcome.summary, tolerance, outcome.run_dir, thresholds),
                                attempts=attempt)
        cores = int((outcome.summary.get("host") or {}).get("cores") or 0)
        if v.comparable:
            return v
        if v.cache is not None and not v.cache.comparable:
            # the same traffic against a fresh cache gives the same hit ratio: no use measuring again
            return v
        # keep the run closest to the sweep's conditions
        if best is None or unlikeness(best, thresholds, cores) > unlikeness(v, thresholds, cores):
            best = v
        if attempt < attempts:
            say(f"not like for like ({'; '.join(v.comparability)}): measuring again ({attempt + 1}/{attempts})")
    assert best is not None
    return dataclasses.replace(best, attempts=max(1, attempts))


def _expectation_line(scen: Any, hit_rate: float, hit_cost: float, rps: float, duration_s: float, warmup_s: float,
                      tolerance: float, embedded: bool) -> str:
    """What the scenario's repeat model should give over this run, against the plan's hit rate."""
    from toolkit.capacity.cache import catalog_for_hit_ratio, run_hit_ratio

    leaves = scen.leaves()
    planned = f"the plan is sized for a {hit_rate:.2f} cache hit rate"
    if len(leaves) != 1 or leaves[0].protocol.kind == "stream":  # a mix's or a stream's: measured only
        return f"{planned}; the run's hit ratio is measured and compared with it"
    spec = leaves[0].repeat
    n, before = int(round(rps * duration_s)), int(round(rps * warmup_s))
    h = run_hit_ratio(spec.catalog, spec.distribution, spec.s, n, before, spec.cache_entries)
    if h is None:
        return f"{planned}; the run's hit ratio is measured and compared with it"
    line = (f"{planned}; scenario {scen.name!r} ({spec.distribution}"
            + (f" s={spec.s:g}" if spec.s is not None else "") + f" over {spec.catalog} items) is expected to give "
            f"{h:.2f} over this run ({n} requests after {before} in the warm-up, from an empty cache)")
    if abs(work_per_request(h, hit_cost) / work_per_request(hit_rate, hit_cost) - 1.0) <= tolerance:
        return line
    fit = catalog_for_hit_ratio(hit_rate, spec.distribution, spec.s, n, before, spec.cache_entries)
    return (line + ": too far from the plan's for the run to check it"
            + (" unless the target's cache is already warm" if not embedded else "")
            + (f"; repeat.catalog {fit} would give {hit_rate:.2f}" if fit else
               "; no catalog size gives it with this distribution (change repeat.s)"))
