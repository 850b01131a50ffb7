"""The one input every generator reads: :class:`OpsSpec`, a validated value object.

It is built from a plan (``asrtk.plan/v1``, already parsed into a dict: no files here),
from command-line flags (``--upstream HOST:PORT[:weight]``, ``--target-qps``,
``--slo p95=1.5s``), or from the documented defaults (:func:`default_spec`, which the
checked-in artifacts under ``alerts/`` and ``dashboards/grafana/`` are generated from).

Every number a generator writes can be traced: ``spec.source(field)`` says where it came
from (a plan key, a flag, or "default: ..."), and generated files quote it in comments.

Defaults for keys a hand-written plan may leave out (the values come from the one table,
:data:`toolkit.capacity.planfile.DEFAULTS`):

================================  ====================================================
key                               default
================================  ====================================================
``target.qps``                    required (no default: nothing can be sized without it)
``target.route``                  ``/recognize``
``slo.percentile`` / ``latency_s``  0.95 / 1.5 s
``slo.max_error_rate``            0.01
``headroom``                      0.8 (planned capacity = target / headroom without node data)
``fleet``                         required unless ``--hosts`` / ``--upstream`` are given
``fleet[].address``               all null (planned without ``--hosts``): nginx, Prometheus and
                                  dashboards refuse (``--hosts``), or ``--template`` placeholders
``fleet[].weight`` / ``backup``   1 / false
``latency_s.p50|p95|p99|max``     absent: proxy timeouts fall back to documented defaults
``request.max_body_bytes``        100 MiB (the reference server's ``--max-body-mb`` default)
``request.streaming``             false (no WebSocket location)
================================  ====================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reference_server.metrics_spec import LATENCY_BUCKETS_S
from toolkit.capacity.inventory import Host, assign, fleet_from_hosts
from toolkit.capacity.planfile import DEFAULTS as PLAN_DEFAULTS
from toolkit.capacity.planfile import SCHEMA as PLAN_SCHEMA
from toolkit.errors import ConfigError, UsageError
from toolkit.units import parse_hostport, parse_ratio, parse_slo

DEFAULT_ROUTE: str = PLAN_DEFAULTS["target"]["route"]
DEFAULT_PERCENTILE: float = PLAN_DEFAULTS["slo"]["percentile"]
DEFAULT_LATENCY_S: float = PLAN_DEFAULTS["slo"]["latency_s"]
DEFAULT_MAX_ERROR_RATE: float = PLAN_DEFAULTS["slo"]["max_error_rate"]
DEFAULT_HEADROOM: float = PLAN_DEFAULTS["headroom"]
DEFAULT_MAX_BODY_BYTES: int = PLAN_DEFAULTS["request"]["max_body_bytes"]
DEFAULT_TARGET_QPS = 100.0  # only for default_spec(): the checked-in artifacts
GPU_EXPORTER_PORT = 9400  # dcgm-exporter's port, which `asrtk gpu-exporter` uses too
# --template addresses: the reserved .invalid TLD (RFC 2606) never resolves, so a template can
# never route traffic anywhere by accident, and the name says what to do with it
PLACEHOLDER_DOMAIN = "replace-me.invalid"
PLACEHOLDER_PORT = 8000


@dataclass(frozen=True)
class Upstream:
    """One inference server behind the load balancer."""

    address: str  # host:port as nginx and Prometheus write it ([v6]:port for IPv6)
    weight: int = 1
    backup: bool = False
    name: str = ""
    node_type: str = ""
    source: str = ""  # where the address came from ("hosts.txt line 3"), for the generated comments

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]


@dataclass(frozen=True)
class OpsSpec:
    """What the generators need to know about one service. Build with the ``from_*`` helpers."""

    upstreams: tuple[Upstream, ...]
    target_qps: float
    planned_capacity_rps: float
    route: str = DEFAULT_ROUTE
    slo_percentile: float = DEFAULT_PERCENTILE
    slo_latency_s: float = DEFAULT_LATENCY_S  # as requested; see slo_threshold_s
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    latency_max_s: float | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    streaming: bool = False
    job: str = "asrtk"
    gpu_job: str = "asrtk-gpu"
    gpu_exporter_port: int = GPU_EXPORTER_PORT
    loadgen_targets: tuple[str, ...] = ()
    listen: str = "8080"
    server_name: str = "_"
    status_allow: tuple[str, ...] = ("127.0.0.1", "::1")
    max_fails: int = 3
    fail_timeout_s: int = 10
    retry_non_idempotent: bool = True  # the speech APIs have no side effects (docs/operations.md, retry policy)
    scrape_interval_s: int = 15
    runbook_url: str = ""
    read_timeout_s: int | None = None  # --read-timeout: replaces the one derived from the latency tail
    rate_limit: str | None = None  # --rate-limit, as nginx writes it ("300r/s"): replaces the planned capacity
    # "given": real addresses; "missing": the plan has none (upstreams are placeholders the address-bound
    # generators refuse); "template": placeholders on purpose (--template), marked in every file
    addresses: str = "given"
    # "hosts": servers behind nginx with planned weights; "k8s": pods behind a Service (equal shares)
    platform: str = "hosts"
    # the plan's fleet facts the Kubernetes generator sizes a Deployment from (None: not in the plan)
    nodes: int | None = None  # active + backup: minReplicas (base load + redundancy)
    backup_nodes: int | None = None  # the plan's k of N+k
    workers_per_node: int | None = None
    per_node_rps: float | None = None  # planned load of one active node at the target
    cpu_s_per_request: float | None = None  # measured CPU the server spent per request near that point
    inflight_per_node: float | None = None  # requests in flight per node at the planned load (Little's law)
    memory_max_bytes: float | None = None  # the server's measured peak resident memory (the sweep)
    hit_rate: float | None = None  # the cache hit rate the plan counts on
    origin: str = "defaults"
    sources: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # said on stderr by the CLI (e.g. inventory hosts left out)

    def __post_init__(self) -> None:
        where = self.origin
        if not self.upstreams:
            raise ConfigError(f"{where}: no upstream servers; give fleet entries or --upstream HOST:PORT")
        if all(u.backup for u in self.upstreams):
            raise ConfigError(f"{where}: every upstream is a backup; at least one must be active")
        seen: set[str] = set()
        for i, u in enumerate(self.upstreams):
            if u.address in seen:
                raise ConfigError(f"{where}: upstream {u.address} is listed twice; list each server once")
            seen.add(u.address)
            if u.weight < 1:
                raise ConfigError(f"{where}: upstream {i} ({u.address}) weight must be an integer >= 1, got {u.weight}")
        _positive(where, "target qps", self.target_qps)
        _positive(where, "planned capacity rps", self.planned_capacity_rps)
        if not 0.0 < self.slo_percentile < 1.0:
            raise ConfigError(f"{where}: slo percentile must be in (0, 1), e.g. 0.95, got {self.slo_percentile}")
        if not 0.0 < self.max_error_rate < 1.0:
            raise ConfigError(f"{where}: slo max_error_rate must be in (0, 1), e.g. 0.01, got {self.max_error_rate}: "
                              "the availability alerts burn an error budget, and 0 leaves none (use e.g. 0.1%)")
        _positive(where, "slo latency_s", self.slo_latency_s)
        if self.slo_latency_s > LATENCY_BUCKETS_S[-1]:
            raise ConfigError(
                f"{where}: slo latency {self.slo_latency_s:g} s is above the top latency bucket "
                f"({LATENCY_BUCKETS_S[-1]:g} s); no histogram can measure it, choose <= {LATENCY_BUCKETS_S[-1]:g} s"
            )
        for name in ("latency_p50_s", "latency_p95_s", "latency_p99_s", "latency_max_s"):
            v = getattr(self, name)
            if v is not None:
                _positive(where, name, v)
        if self.max_body_bytes <= 0:
            raise ConfigError(f"{where}: request.max_body_bytes must be > 0, got {self.max_body_bytes}")
        if not self.route.startswith("/"):
            raise ConfigError(f"{where}: target route must start with '/', got {self.route!r}")
        if self.addresses not in ("given", "missing", "template"):
            raise ValueError(f"addresses must be given, missing or template, got {self.addresses!r}")
        if self.platform not in ("hosts", "k8s"):
            raise ValueError(f"platform must be hosts or k8s, got {self.platform!r}")

    # -- derived figures -------------------------------------------------------------------

    @property
    def slo_threshold_s(self) -> float:
        """The latency SLO snapped up to the next histogram bucket boundary."""
        return snap_to_bucket(self.slo_latency_s)

    @property
    def slo_snapped(self) -> bool:
        return not math.isclose(self.slo_threshold_s, self.slo_latency_s)

    @property
    def active(self) -> tuple[Upstream, ...]:
        return tuple(u for u in self.upstreams if not u.backup)

    @property
    def backups(self) -> tuple[Upstream, ...]:
        return tuple(u for u in self.upstreams if u.backup)

    @property
    def percentile_label(self) -> str:
        return f"p{self.slo_percentile * 100:g}"

    def source(self, name: str) -> str:
        return self.sources.get(name, "default")

    def with_overrides(self, **changes: Any) -> "OpsSpec":
        """A copy with fields replaced; sources of replaced fields become 'command line'."""
        return self.with_flags({k: (v, "command line") for k, v in changes.items()})

    def with_flags(self, changes: Mapping[str, tuple[Any, str]]) -> "OpsSpec":
        """A copy with fields replaced by flags: ``{field: (value, flag as typed)}``; the flag is the source."""
        sources = dict(self.sources)
        for k, (_, flag) in changes.items():
            sources[k] = flag
        return replace(self, **{k: v for k, (v, _) in changes.items()}, sources=sources)


def _positive(where: str, what: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{where}: {what} must be a number > 0, got {value!r}")


def snap_to_bucket(latency_s: float) -> float:
    """The smallest boundary of ``LATENCY_BUCKETS_S`` that is >= ``latency_s``."""
    for b in LATENCY_BUCKETS_S:
        if b >= latency_s - 1e-12:
            return b
    raise ConfigError(
        f"slo latency {latency_s:g} s is above the top latency bucket ({LATENCY_BUCKETS_S[-1]:g} s)"
    )


# -- flags ------------------------------------------------------------------------------

def parse_upstream(text: str, backup: bool = False) -> Upstream:
    """``HOST:PORT[:WEIGHT]`` (``[::1]:8000:2`` for IPv6), parsed by :func:`toolkit.units.parse_hostport`."""
    hp = parse_hostport(text, "--backup" if backup else "--upstream")
    return Upstream(address=hp.address, weight=hp.weight or 1, backup=backup, name=hp.address)


# -- builders ------------------------------------------------------------------------------

def default_spec() -> OpsSpec:
    """The spec of the checked-in artifacts: placeholders a user regenerates from a plan."""
    return OpsSpec(
        upstreams=(Upstream("asrtk-1:8000", name="asrtk-1"), Upstream("asrtk-2:8000", name="asrtk-2")),
        target_qps=DEFAULT_TARGET_QPS,
        planned_capacity_rps=DEFAULT_TARGET_QPS / DEFAULT_HEADROOM,
        origin="defaults",
        sources={
            "target_qps": f"default {DEFAULT_TARGET_QPS:g} r/s (no plan: regenerate with --plan plan.yaml)",
            "planned_capacity_rps": f"default: target / headroom {DEFAULT_HEADROOM:g}",
            "slo_latency_s": f"default p{DEFAULT_PERCENTILE * 100:g} <= {DEFAULT_LATENCY_S:g} s",
            "max_error_rate": f"default {DEFAULT_MAX_ERROR_RATE * 100:g}%",
        },
    )


def from_flags(
    upstreams: Sequence[str],
    backups: Sequence[str] = (),
    target_qps: float | None = None,
    slo: str | None = None,
    max_error_rate: str | None = None,
    capacity_rps: float | None = None,
    headroom: float = DEFAULT_HEADROOM,
    route: str = DEFAULT_ROUTE,
    max_body_bytes: int | None = None,
    streaming: bool = False,
    latency_max_s: float | None = None,
    hosts: Sequence[Host] = (),
) -> OpsSpec:
    """A spec from ``--hosts`` / ``--upstream`` flags instead of a plan (no measured tail: default timeouts)."""
    if target_qps is None:
        raise UsageError("--target-qps is required without --plan, e.g. --target-qps 300")
    if not 0.0 < headroom <= 1.0:
        raise UsageError(f"--headroom must be in (0, 1], got {headroom}")
    ups = tuple(parse_upstream(u) for u in upstreams) + tuple(parse_upstream(b, backup=True) for b in backups)
    ups += tuple(_upstreams(fleet_from_hosts(hosts), "--hosts"))
    sources: dict[str, str] = {"target_qps": f"--target-qps {target_qps:g}"}
    kwargs: dict[str, Any] = {}
    if slo:
        pct, lat = parse_slo(slo)
        kwargs.update(slo_percentile=pct, slo_latency_s=lat)
        sources["slo_latency_s"] = f"--slo {slo}"
    if max_error_rate:
        kwargs["max_error_rate"] = parse_ratio(max_error_rate, "--max-error-rate")
        sources["max_error_rate"] = f"--max-error-rate {max_error_rate}"
    if capacity_rps is not None:
        cap = capacity_rps
        sources["planned_capacity_rps"] = f"--capacity-rps {capacity_rps:g}"
    else:
        cap = target_qps / headroom
        sources["planned_capacity_rps"] = f"target {target_qps:g} r/s / headroom {headroom:g} (no measured capacity)"
    if max_body_bytes is not None:
        kwargs["max_body_bytes"] = max_body_bytes
        sources["max_body_bytes"] = "command line"
    if latency_max_s is not None:
        kwargs["latency_max_s"] = latency_max_s
        sources["latency_max_s"] = "command line"
    return OpsSpec(
        upstreams=ups, target_qps=float(target_qps), planned_capacity_rps=float(cap), route=route,
        streaming=streaming, origin="command line", sources=sources, **kwargs,
    )


def from_plan(
    plan: Mapping[str, Any], name: str = "plan.yaml", hosts: Sequence[Host] = (), hosts_source: str = "",
) -> OpsSpec:
    """A spec from a parsed ``asrtk.plan/v1`` document; absent keys take the documented defaults.

    ``hosts`` (an inventory) replace the fleet's addresses, matched to its slots as ``asrtk plan
    --hosts`` does; without them a fleet planned without addresses gives placeholder upstreams
    and ``addresses="missing"``."""
    if not isinstance(plan, Mapping):
        raise ConfigError(f"{name}: expected a mapping at the top level (asrtk.plan/v1), got {type(plan).__name__}")
    schema = plan.get("schema")
    if schema is not None and schema != PLAN_SCHEMA:
        raise ConfigError(f"{name}: schema is {schema!r}; this asrtk reads {PLAN_SCHEMA!r} (re-run asrtk plan)")
    sources: dict[str, str] = {}
    target = _section(plan, "target", name)
    slo = _section(plan, "slo", name)
    latency = _section(plan, "latency_s", name)
    request = _section(plan, "request", name)
    provenance = _section(plan, "sources", name)

    target_qps = _num(target, "qps", name, "target.qps")
    if target_qps is None:
        raise ConfigError(f"{name}: target.qps is missing; add it (the QPS the fleet is sized for)")
    sources["target_qps"] = f"{name} target.qps = {target_qps:g}"
    route = str(target.get("route") or DEFAULT_ROUTE)
    sources["route"] = f"{name} target.route" if "route" in target else f"default {DEFAULT_ROUTE}"

    kwargs: dict[str, Any] = {}
    pct = _num(slo, "percentile", name, "slo.percentile")
    lat = _num(slo, "latency_s", name, "slo.latency_s")
    if pct is not None:
        kwargs["slo_percentile"] = pct
    if lat is not None:
        kwargs["slo_latency_s"] = lat
    sources["slo_latency_s"] = (
        f"{name} slo (p{(pct or DEFAULT_PERCENTILE) * 100:g} <= {lat if lat is not None else DEFAULT_LATENCY_S:g} s)"
        + ("" if pct is not None and lat is not None else ", defaults for missing keys")
    )
    err = _num(slo, "max_error_rate", name, "slo.max_error_rate")
    if err is not None:
        kwargs["max_error_rate"] = err
        sources["max_error_rate"] = f"{name} slo.max_error_rate = {err:g}"
    else:
        sources["max_error_rate"] = f"default {DEFAULT_MAX_ERROR_RATE * 100:g}% (slo.max_error_rate absent)"

    for key in ("p50", "p95", "p99", "max"):
        v = _num(latency, key, name, f"latency_s.{key}")
        if v is not None:
            kwargs[f"latency_{key}_s"] = v
            sources[f"latency_{key}_s"] = f"{name} latency_s.{key} = {v:g} s (" + str(
                provenance.get("latency_s") or "measured near the planned point") + ")"

    body = request.get("max_body_bytes")
    if body is not None:
        if isinstance(body, bool) or not isinstance(body, int) or body <= 0:
            raise ConfigError(f"{name}: request.max_body_bytes must be a positive integer, got {body!r}")
        kwargs["max_body_bytes"] = body
        sources["max_body_bytes"] = f"{name} request.max_body_bytes = {body}" + (
            f" ({provenance['request.max_body_bytes']})" if provenance.get("request.max_body_bytes") else "")
    else:
        sources["max_body_bytes"] = (f"default {DEFAULT_MAX_BODY_BYTES / 2**20:g} MiB (the reference server's "
                                     "--max-body-mb; request.max_body_bytes absent)")
    streaming = request.get("streaming", False)
    if not isinstance(streaming, bool):
        raise ConfigError(f"{name}: request.streaming must be true or false, got {streaming!r}")

    node_caps: dict[str, float] = {}
    for i, nt in enumerate(plan.get("node_types") or []):
        if isinstance(nt, Mapping) and nt.get("name") is not None:
            cap = _num(nt, "capacity_rps", name, f"node_types[{i}].capacity_rps")
            if cap is not None:
                node_caps[str(nt["name"])] = cap

    fleet = plan.get("fleet")
    if fleet is not None and not isinstance(fleet, list):
        raise ConfigError(f"{name}: fleet must be a list of {{name, address, weight, backup}}")
    addresses = "given"
    host_notes: list[str] = []
    for i, entry in enumerate(fleet or []):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{name}: fleet[{i}] must be a mapping {{name, address, weight, backup}}")
    if hosts:
        if fleet:
            slots = [{**e, "weight": _weight(e, i, name)} for i, e in enumerate(fleet)]
            fleet, host_notes = assign(slots, hosts, hosts_source)
        else:
            fleet = fleet_from_hosts(hosts)
    elif not fleet:
        raise ConfigError(f"{name}: fleet is missing or empty; pass --hosts FILE (one HOST:PORT per line) "
                          "or --upstream HOST:PORT")
    elif all(e.get("address") is None for e in fleet):
        addresses = "missing"  # planned without --hosts: placeholders only the address-free generators use
        fleet = [{**e, "address": placeholder_address(str(e.get("name") or f"node-{i + 1}"))}
                 for i, e in enumerate(fleet)]
    ups = _upstreams(fleet, name)
    headroom = _num(plan, "headroom", name, "headroom") or DEFAULT_HEADROOM
    kwargs.update(_fleet_facts(plan, name, sources))
    active = [u for u in ups if not u.backup]
    if active and all(u.node_type in node_caps for u in active):
        capacity = sum(node_caps[u.node_type] for u in active)
        parts = " + ".join(f"{u.name} {node_caps[u.node_type]:g}" for u in active)
        sources["planned_capacity_rps"] = (
            f"sum of measured capacity of the active fleet ({name} node_types[].capacity_rps): "
            + (parts if len(active) <= 4 else f"{len(active)} nodes") + f" = {capacity:g} r/s"
            + (f"; measured by {provenance['capacity']}" if provenance.get("capacity") else "")
        )
    else:
        capacity = target_qps / headroom
        sources["planned_capacity_rps"] = (
            f"target {target_qps:g} r/s / headroom {headroom:g} ({name} has no node_types capacity for every active node)"
        )
    return OpsSpec(
        upstreams=tuple(ups), target_qps=target_qps, planned_capacity_rps=capacity, route=route,
        streaming=streaming, addresses=addresses, origin=name, sources=sources, notes=tuple(host_notes), **kwargs,
    )


def _fleet_facts(plan: Mapping[str, Any], name: str, sources: dict[str, str]) -> dict[str, Any]:
    """What a Deployment is sized from: the recommended fleet, the per-node load and CPU, and the
    requests in flight per node at that load (Little's law L = lambda W with the plan's queueing
    model, else its measured p50 in place of the mean). Absent keys stay None; ``sources`` says where
    each present one came from."""
    out: dict[str, Any] = {}
    rec = _section(plan, "recommended", name)
    exp = _section(plan, "expected", name)
    for key, path in (("nodes", "recommended.nodes"), ("backup_nodes", "recommended.backup_nodes"),
                      ("workers_per_node", "recommended.workers_per_node")):
        v = rec.get(path.split(".")[1])
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (key != "backup_nodes" and v < 1):
            raise ConfigError(f"{name}: {path} must be a whole number >= {0 if key == 'backup_nodes' else 1}, got {v!r}")
        out[key] = v
        sources[key] = f"{name} {path} = {v}"
    lam = _num(exp, "per_node_rps", name, "expected.per_node_rps")
    if lam is not None:
        out["per_node_rps"] = lam
        sources["per_node_rps"] = f"{name} expected.per_node_rps = {lam:g}"
    cpu = _num(exp, "target_cpu_s_per_request", name, "expected.target_cpu_s_per_request")
    if cpu is not None:
        out["cpu_s_per_request"] = cpu
        sources["cpu_s_per_request"] = (f"{name} expected.target_cpu_s_per_request = {cpu:.4g} s ("
                                        + str(exp.get("cpu_source") or "measured") + ")")
    mem = _num(exp, "server_memory_max_bytes", name, "expected.server_memory_max_bytes")
    if mem is not None and mem > 0:
        out["memory_max_bytes"] = mem
        sources["memory_max_bytes"] = (f"{name} expected.server_memory_max_bytes = {mem / 2**20:.0f} MiB ("
                                       + str(exp.get("memory_source") or "measured") + ")")
    cache = exp.get("cache")
    if isinstance(cache, Mapping) and cache.get("hit_rate") is not None:
        h = _num(cache, "hit_rate", name, "expected.cache.hit_rate")
        out["hit_rate"] = h
        sources["hit_rate"] = f"{name} expected.cache.hit_rate = {h:g}"
    if lam is None:
        return out
    mi = exp.get("model_inputs")
    mi = mi if isinstance(mi, Mapping) else {}
    s_mean = _num(mi, "service_time_mean_s", name, "expected.model_inputs.service_time_mean_s")
    c = _num(mi, "servers", name, "expected.model_inputs.servers")
    p_wait = _num(mi, "p_wait", name, "expected.model_inputs.p_wait")
    p50 = _num(_section(plan, "latency_s", name), "p50", name, "latency_s.p50")
    if s_mean and c and p_wait is not None and lam * s_mean < c:
        # Erlang C: Wq = P(wait) S / (c - lambda S), times the Allen-Cunneen factor (ca^2 + cs^2) / 2
        ca2 = _num(mi, "arrival_ca2", name, "expected.model_inputs.arrival_ca2") or 1.0
        cs2 = _num(mi, "service_time_cv2", name, "expected.model_inputs.service_time_cv2") or 1.0
        wq = p_wait * s_mean / (c - lam * s_mean) * (ca2 + cs2) / 2
        out["inflight_per_node"] = lam * (s_mean + wq)
        sources["inflight_per_node"] = (
            f"Little's law at {lam:g} rps per node x mean latency {s_mean + wq:.3g} s (the plan's queueing model: "
            f"service {s_mean:.3g} s + wait {wq:.3g} s, {name} expected.model_inputs)")
    elif p50 is not None:
        out["inflight_per_node"] = lam * p50
        sources["inflight_per_node"] = (f"Little's law at {lam:g} rps per node x measured p50 {p50:.3g} s ({name} "
                                        "latency_s.p50, in place of the mean)")
    return out


def placeholder_address(name: str) -> str:
    """A --template address: the slot's name under the never-resolving placeholder domain."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or "node"
    return f"{label}.{PLACEHOLDER_DOMAIN}:{PLACEHOLDER_PORT}"


def _weight(entry: Mapping[str, Any], i: int, name: str) -> int:
    weight = entry.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise ConfigError(f"{name}: fleet[{i}].weight must be an integer >= 1, got {weight!r}")
    return weight


def _upstreams(fleet: Sequence[Mapping[str, Any]], name: str) -> list[Upstream]:
    ups = []
    for i, entry in enumerate(fleet):
        if not entry.get("address"):
            raise ConfigError(f"{name}: fleet[{i}].address is missing; write it as host:port (or give --hosts FILE)")
        address = str(entry["address"])
        try:
            parse_hostport(address, f"{name}: fleet[{i}].address", weight=False)
        except UsageError as exc:
            raise ConfigError(str(exc)) from None
        weight = _weight(entry, i, name)
        backup = entry.get("backup", False)
        if not isinstance(backup, bool):
            raise ConfigError(f"{name}: fleet[{i}].backup must be true or false, got {backup!r}")
        ups.append(Upstream(address=address, weight=weight, backup=backup, name=str(entry.get("name") or address),
                            node_type=str(entry.get("node_type") or ""), source=str(entry.get("source") or "")))
    return ups


def _section(doc: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: {key} must be a mapping, got {type(value).__name__}")
    return value


def _num(doc: Mapping[str, Any], key: str, name: str, path: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}: {path} must be a number, got {value!r}")
    return float(value)
