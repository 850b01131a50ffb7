"""Measurement thresholds: when a run is invalid, disturbed, or not like for like. One place.

They were tuned on a shared 2-core VM (the figures behind each are in ``docs/bench.md`` and
``docs/capacity.md``) and are expressed so that they scale with the host: CPU amounts are a
share of the host's cores, not a number of cores. Each can be overridden with an environment
variable (read when a command starts; values use the shared parsers of :mod:`toolkit.units`):

===============================  ==================================  =========  ==========================
threshold                        meaning                             default    environment variable
===============================  ==================================  =========  ==========================
``loadgen_cpu_percent``          busiest load-generator process,     90         ``ASRTK_LOADGEN_MAX_CPU``
                                 mean % of one core; above: invalid             (``90`` or ``90%``)
``schedule_lag_p99_s``           schedule-lag p99; above: invalid    50 ms      ``ASRTK_LOADGEN_MAX_LAG``
``disturbed_share``              other processes + CPU steal, share  5%         ``ASRTK_DISTURBED_SHARE``
                                 of the host's cores (at least 2);
                                 above: the run is ``disturbed``
``like_cpu_per_request``         plan validate: target CPU per       10%        ``ASRTK_LIKE_CPU_PER_REQUEST``
                                 request may differ this much
``like_interference_share``      plan validate: interference may     1.5%       ``ASRTK_LIKE_INTERFERENCE_SHARE``
                                 differ this share of the cores
===============================  ==================================  =========  ==========================

On a 2-core host the defaults are the figures the project measured with: 0.1 cores of
interference marks a run disturbed (quiet periods show <= 0.03 cores; the same 64 rps load had
p95 0.052 s at 0.001 cores of steal, 0.100 s at 0.07 and 0.13 s at 0.17) and runs compare like
for like within 0.03 cores (at 51 rps p95 went 0.063, 0.077, 0.079, 0.25 s as steal went 0.12,
0.18, 0.21, 0.46 cores). Latency amplifies CPU per request: at 40% load on that VM +20% CPU per
request came with +50% p95, +35% with +120%, hence the 10% tolerance.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from toolkit.errors import UsageError
from toolkit.units import parse_duration, parse_ratio

# the smallest host the core shares are applied to: below it they would shrink into the noise
MIN_CORES = 2


@dataclass(frozen=True)
class Thresholds:
    loadgen_cpu_percent: float = 90.0
    schedule_lag_p99_s: float = 0.050
    disturbed_share: float = 0.05
    like_cpu_per_request: float = 0.10
    like_interference_share: float = 0.015

    def disturbed_cores(self, cores: int) -> float:
        """Interference (cores) above which a run on a host with ``cores`` cores is disturbed."""
        return self.disturbed_share * max(int(cores or 0), MIN_CORES)

    def like_interference_cores(self, cores: int) -> float:
        """How far interference may differ (cores) between two runs compared like for like."""
        return self.like_interference_share * max(int(cores or 0), MIN_CORES)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


ENV = {
    "loadgen_cpu_percent": "ASRTK_LOADGEN_MAX_CPU",
    "schedule_lag_p99_s": "ASRTK_LOADGEN_MAX_LAG",
    "disturbed_share": "ASRTK_DISTURBED_SHARE",
    "like_cpu_per_request": "ASRTK_LIKE_CPU_PER_REQUEST",
    "like_interference_share": "ASRTK_LIKE_INTERFERENCE_SHARE",
}


def _cpu_percent(text: str, flag: str) -> float:
    s = text.strip().removesuffix("%")
    try:
        value = float(s)
    except ValueError:
        raise UsageError(f"{flag} must be a percentage of one core like 90 or 90%, got {text!r}") from None
    if not 0 < value <= 100:
        raise UsageError(f"{flag} must be in (0, 100] (% of one core), got {text!r}")
    return value


_PARSERS = {
    "loadgen_cpu_percent": _cpu_percent,
    "schedule_lag_p99_s": parse_duration,
    "disturbed_share": parse_ratio,
    "like_cpu_per_request": parse_ratio,
    "like_interference_share": parse_ratio,
}


def from_env(environ: Mapping[str, str] | None = None) -> Thresholds:
    """The defaults with every ``ASRTK_*`` override of :data:`ENV` applied; a bad value is a UsageError."""
    env = os.environ if environ is None else environ
    changes = {}
    for name, var in ENV.items():
        raw = env.get(var)
        if raw is not None and raw.strip():
            changes[name] = _PARSERS[name](raw, var)
    return Thresholds(**changes)


def overridden(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables that change a threshold now (name -> raw value), for reports."""
    env = os.environ if environ is None else environ
    return {var: env[var] for var in ENV.values() if env.get(var, "").strip()}
