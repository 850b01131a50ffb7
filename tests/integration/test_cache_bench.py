"""A TTS scenario with Zipf popularity against a real server running --cache: the hit rate bench
measures (client X-Cache and server counters) agrees with the scenario's computed expectation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import latency_server as ls
from reference_server.launcher import EmbeddedServer
from toolkit.resources import data_dir

pytestmark = pytest.mark.integration


def test_zipf_tts_hit_rate_matches_the_expectation(asrtk_cache_dir: Path, tmp_path: Path) -> None:
    data = yaml.safe_load((data_dir("scenarios") / "tts.yaml").read_text())
    data.update(name="tts-zipf", repeat={"distribution": "zipf", "s": 1.1, "catalog": 300})
    data["load"]["rate"] = 12.0
    scenario = tmp_path / "tts-zipf.yaml"
    scenario.write_text(yaml.safe_dump(data))
    # 256 MiB holds every answer of a 300-text catalog: the unbounded expectation applies
    with EmbeddedServer("tiny", extra_args=["--cache", "memory:256MiB", "--threads", "1"], ready_timeout_s=300,
                        log_path=tmp_path / "server.log") as srv:
        out = tmp_path / "res"
        r = ls.run_bench(["-s", str(scenario), "--target", srv.url, "--duration", "20", "--warmup", "2",
                          "--out", str(out), "--no-fail-on-slo"], timeout_s=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((ls.run_dir(out) / "summary.json").read_text())
    cache = s["cache"]
    client, server, expected = cache["client"], cache["server"], cache["expected"]
    assert client["responses"] >= 150, client
    assert abs(client["hit_ratio"] - expected["hit_ratio"]) <= 0.05, cache
    assert abs(server["hit_ratio"] - client["hit_ratio"]) <= 0.05, cache
    assert client["latency_hit_s"]["p50"] < client["latency_miss_s"]["p50"], cache
    print(f"\n[cache] measured {client['hit_ratio']:.3f} (server {server['hit_ratio']:.3f}), "
          f"expected {expected['hit_ratio']:.3f} over {client['responses']} responses")
