"""``asrtk.result/v1``: the summary the code builds, the keys it requires and the schema document
(docs/results.md) say the same thing."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from toolkit import results
from toolkit.recorder import Aggregator, Outcome, Recorder
from toolkit.scenario import load_scenario, with_overrides
from toolkit.thresholds import Thresholds

DOC = Path(__file__).resolve().parents[2] / "docs" / "results.md"
TOP_LEVEL_SECTIONS = ("Identity", "Window")


def documented_keys() -> set[str]:
    """Dotted keys named in the ``summary.json`` part of docs/results.md: a section ``### `x` ``
    documents ``x`` and every backticked name in its text and tables as ``x.name``."""
    text = DOC.read_text(encoding="utf-8")
    part = text.split("## `summary.json`", 1)[1].split("\n## ", 1)[0]
    keys: set[str] = set()
    for block in re.split(r"\n### ", part)[1:]:
        heading, _, body = block.partition("\n")
        m = re.match(r"`([a-z_]+)`", heading)
        names = {n for cell in re.findall(r"`([^`]+)`", body) for n in re.split(r"[,\s]+", cell) if n}
        if m:
            keys.add(m.group(1))
            keys.update(f"{m.group(1)}.{n}" for n in names if re.fullmatch(r"[a-z_0-9]+", n))
        elif heading.strip() in TOP_LEVEL_SECTIONS:
            keys.update(n for n in names if re.fullmatch(r"[a-z_0-9]+", n))
    return keys


def _summary(x_cache: bool = False, **over: object) -> dict:
    sc = with_overrides(load_scenario("mobile"), rate=10.0, duration_s=4, warmup_s=1)
    rec = Recorder(sc.warmup_s, sc.duration_s)
    for i in range(40):
        t = 0.1 * i + 0.05
        rec.note_scheduled(t)
        ok = i % 10 != 3
        rec.record(Outcome(intended_s=t, sent_s=t, done_s=t + 0.02, latency_s=0.02 + 0.001 * i, ok=ok,
                           error_class=None if ok else "http_503", audio_s=2.0 if ok else None,
                           bytes_sent=1000, bytes_received=100,
                           cache=("hit" if i % 3 else "miss") if x_cache else None))
    closed = rec.flush()
    agg = Aggregator()
    agg.ingest("local", {"intervals": closed, "totals": rec.snapshot()})
    host = {"cores": 2, "cpu_mean_percent": 50.0, "cpu_max_percent": 70.0, "memory_used_max_bytes": 1,
            "target_cpu_cores_mean": 0.5, "other_cpu_cores_mean": 0.01, "steal_cpu_cores_mean": 0.0,
            "interference_cpu_cores_mean": 0.01, "interference_threshold_cores": 0.1, "disturbed": False}
    kwargs = dict(
        run_id="r1", asrtk_version="0", created=datetime(2026, 12, 2, tzinfo=timezone.utc), interrupted=False,
        label=None, scenario=sc, target_url="http://127.0.0.1:1", server_info=None, processes=1,
        measured_s=sc.duration_s, totals=agg.merged_totals(), intervals=agg.merged_intervals(),
        loadgen_cpu=(20.0, 30.0), host=host, gpu={"available": False, "reason": "none", "devices": []},
        server=None, thresholds=Thresholds(),
    )
    kwargs.update(over)
    return results.build_summary(**kwargs)  # type: ignore[arg-type]


def test_a_built_summary_has_every_required_key() -> None:
    s = _summary()
    assert results.validate_summary(s) == []
    assert s["requests"]["by_class"] == {"http_503": s["requests"]["errors"]}
    assert s["files"] == results.FILES


def test_every_required_key_is_documented() -> None:
    missing = sorted(set(results.REQUIRED_KEYS) - documented_keys())
    assert missing == [], f"add these to docs/results.md: {missing}"


def test_every_key_a_summary_carries_is_documented() -> None:
    s = _summary()
    keys = set(s)
    for section, value in s.items():
        if isinstance(value, dict) and section not in ("target",):
            keys.update(f"{section}.{k}" for k in value)
    keys.update(f"target.{k}" for k in s["target"])
    missing = sorted(keys - documented_keys())
    assert missing == [], f"add these to docs/results.md: {missing}"


def test_the_document_parser_sees_the_sections() -> None:
    keys = documented_keys()
    assert {"schema", "duration_s", "requests.by_class", "host.disturbed", "loadgen.valid"} <= keys


@pytest.mark.parametrize("cpu, lag, valid", [(20.0, 0.001, True), (95.0, 0.001, False), (20.0, 0.2, False)])
def test_loadgen_validity_uses_the_thresholds_in_force(cpu: float, lag: float, valid: bool) -> None:
    ok, warnings = results.loadgen_verdict(cpu, lag, 0, Thresholds())
    assert ok is valid and (not warnings) is valid
    relaxed = Thresholds(loadgen_cpu_percent=99.0, schedule_lag_p99_s=0.5)
    assert results.loadgen_verdict(cpu, lag, 0, relaxed)[0] is True


def test_interrupted_runs_say_so() -> None:
    s = _summary(interrupted=True, measured_s=2.0)
    assert s["complete"] is False and s["incomplete_reason"] == "interrupted"
    assert any("interrupted" in w for w in s["loadgen"]["warnings"])


def test_the_cache_block_is_documented_key_by_key() -> None:
    from toolkit.samplers import PrometheusScraper, cache_server_summary

    assert _summary()["cache"] is None  # no X-Cache, no counters: the target has no cache
    pages = iter(['asrtk_cache_lookups_total{model="asr",level="memory",result="hit"} 0\n',
                  'asrtk_cache_lookups_total{model="asr",level="memory",result="hit"} 20\n'])
    scraper = PrometheusScraper("http://t/metrics", fetch=lambda url: next(pages))
    scraper.scrape(0.5)
    scraper.scrape(4.0)
    server = cache_server_summary([scraper], 1.0, 5.0)
    models = [{"scenario": "mobile", "repeat": True, "distribution": "zipf", "s": 1.1, "catalog": 500,
               "cache_entries": 50, "share": 1.0}]
    s = _summary(x_cache=True, cache_server=server, popularity=models)
    cache = s["cache"]
    assert cache["client"]["hits"] + cache["client"]["misses"] == cache["client"]["responses"] > 0
    assert cache["expected"]["hit_ratio"] is not None and cache["expected"]["steady_hit_ratio"] is not None
    keys = {f"cache.{k}" for k in cache}
    for part in ("client", "server", "expected"):
        keys.update(f"cache.{k}" for k in cache[part])
    keys.update(f"cache.{k}" for k in cache["client"]["latency_hit_s"])
    keys.update(f"cache.{k}" for k in cache["server"]["levels"]["memory"])
    keys.update(f"cache.{k}" for k in cache["expected"]["models"][0])
    missing = sorted(keys - documented_keys())
    assert missing == [], f"add these to docs/results.md: {missing}"
