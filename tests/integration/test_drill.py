"""`asrtk drill` end to end: the real nginx (the config `asrtk generate nginx` writes) in front of
reference servers on loopback, failures injected under open-loop load, promises judged.

The drills run in a subprocess (`python -m toolkit drill`): the load engine monkey-patches its
process with gevent, which must not happen to pytest's. Phases are shortened (fail_timeout 3 s,
2 s settles, a 6 s freeze, a 5 s overload, mobile with Poisson arrivals) so the whole set fits the
CI budget; `asrtk drill` at its defaults is what the docs' figures come from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reference_server.launcher import EmbeddedServer

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed"),
]
SHORT = ["--fail-timeout", "3s", "--settle", "2s", "--down", "2s", "--hang-for", "6s", "--overload-for", "5s",
         "--quiet"]


def poisson_mobile(tmp: Path) -> str:
    """The mobile scenario with Poisson arrivals: with its bursts, every injection waits for the next
    one (up to 10 s); CI's time is better spent on the drills."""
    import yaml

    from toolkit.scenario import resolve_path

    doc = yaml.safe_load(resolve_path("mobile").read_text())
    doc["name"] = "mobile-poisson"
    doc["load"] = {k: v for k, v in doc["load"].items() if not k.startswith("burst")} | {"arrival": "poisson"}
    path = tmp / "mobile-poisson.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def drill(tmp: Path, *args: str, timeout_s: float = 240.0) -> tuple[subprocess.CompletedProcess[str], dict, Path]:
    args = ("--scenario", poisson_mobile(tmp), *args)
    out = tmp / "results"
    doc = tmp / "drill.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "toolkit", "drill", "--out", str(out), "--json", str(doc), *args],
                       capture_output=True, text=True, timeout=timeout_s, env=env, cwd=str(tmp))
    runs = sorted(out.glob("*-drill")) if out.exists() else []
    summary = json.loads((runs[-1] / "summary.json").read_text()) if runs else {}
    return r, summary, runs[-1] if runs else out


def doubtful(drill_json: Path) -> list[str]:
    """The drills of a `--json` document whose own checks say their figures cannot be trusted: the
    load generator invalid or warning, or the host disturbed (a shared VM's CPU steal comes and goes)."""
    doc = json.loads(drill_json.read_text())
    return [d["name"] for d in doc["drills"]
            if not d["loadgen"]["valid"] or d["loadgen"]["warnings"] or d["host"]["disturbed"]]


def drill_measured_quietly(tmp: Path, *args: str
                           ) -> tuple[subprocess.CompletedProcess[str], dict, Path, dict, list[str]]:
    """A drill, and once more when asrtk itself marked one of its drills doubtful: a promise judged
    on a disturbed host says little either way. Returns the run kept (its process, summary.json, run
    directory and --json document) and the drills still doubtful in it."""
    for attempt in ("first", "again"):
        (tmp / attempt).mkdir()
        r, summary, run_dir = drill(tmp / attempt, *args)
        assert (tmp / attempt / "drill.json").is_file(), r.stdout[-3000:] + r.stderr[-3000:]
        unsure = doubtful(tmp / attempt / "drill.json")
        if not unsure:
            break
        print(f"{attempt} run: drills {unsure} were doubtful (host disturbed or load generator invalid)")
    return r, summary, run_dir, json.loads((tmp / attempt / "drill.json").read_text()), unsure


@pytest.mark.slow
def test_every_drill_holds_against_the_embedded_fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    r, summary, run_dir, doc, unsure = drill_measured_quietly(tmp_path, *SHORT)
    wall = time.monotonic() - t0
    # the exit code is the verdict: 0 when every promise held, 4 (inconclusive) when the only broken
    # ones are in drills asrtk marked doubtful; a broken promise in a quiet drill is a failure
    broken_quiet = [d["name"] for d in doc["drills"] if d["passed"] is False and d["name"] not in unsure]
    assert not broken_quiet, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.returncode == (0 if all(d["passed"] for d in doc["drills"]) else 4), r.stdout[-3000:] + r.stderr[-3000:]
    assert [d["name"] for d in doc["drills"]] == ["kill", "restart", "hang", "overload", "failover"]
    for d in doc["drills"]:
        assert d["error_bound"] is not None and d["recovery_bound_s"] is not None, d
        lg, host = d["loadgen"], d["host"]
        assert lg["late_starts"] >= 0 and 0 < lg["cpu_mean_percent"], lg
        # the fleet (restarted replicas included) is the target, not other work
        assert host["target_cpu_cores_mean"] > 0 and host["interference_cpu_cores_mean"] is not None, host
        if d["name"] in unsure:
            continue  # twice doubtful: its verdict is the inconclusive exit code checked above
        assert d["passed"] is True, d
        assert d["errors"] <= d["error_bound"] and d["recovery_s"] <= d["recovery_bound_s"], d
        # the load generator checked itself in every drill, as bench does, and so did the host
        assert lg["valid"] is True and lg["warnings"] == [] and lg["cpu_mean_percent"] < 90, lg
        assert 0 <= lg["schedule_lag_p99_s"] < 0.05, lg
        assert host["disturbed"] is False, host
    # the bounds come from the config that ran: the generated nginx config, fail_timeout 3 s
    nginx = summary["facts"]["nginx"]
    assert nginx["fail_timeout_s"] == 3.0 and nginx["max_fails"] == 3 and "non_idempotent" in nginx["next_upstream"]
    assert nginx["tries"] == 3  # two primaries and the backup
    conf = (run_dir / "fleet/nginx/asrtk.conf").read_text()
    assert "generated by `asrtk generate nginx`" in conf and "backup;" in conf
    # every promise was judged against the fleet's internals, none left unknown
    assert summary["unknown"] == [] and summary["complete"] is True
    assert all(line.split(":", 1)[0] in unsure for line in summary["broken"]), summary["broken"]
    overload = next(d for d in summary["drills"] if d["name"] == "overload")
    shed = next(p for p in overload["promises"] if p["key"] == "overload.shed")
    assert "0 without Retry-After" in shed["measured"]
    for name in ("summary.json", "timeline.csv", "events.csv", "report.md", "report.html"):
        assert (run_dir / name).is_file(), name
    html = (run_dir / "report.html").read_text()
    assert html.count("<svg") == 5 and "kill replica-1" in html and "overload_start" in html
    with capsys.disabled():
        print(f"\n[drill] all five, shortened, {wall:.0f} s (doubtful twice: {unsure or 'none'}): " + "; ".join(
            f"{d['name']} errors {d['errors']}/{d['error_bound']} recovery {d['recovery_s']:.2f}/"
            f"{d['recovery_bound_s']:.0f} s" for d in doc["drills"]))


@pytest.mark.slow
def test_a_fleet_without_passive_health_checks_or_a_visible_drain_is_caught(tmp_path: Path) -> None:
    """The broken fleet: nginx with max_fails=0 (it never ejects a dead server) and servers whose
    drain answers 503 for a second (--not-ready respond --drain-grace-s 1: nginx does not retry a
    POST it has sent). The drill exits 3 and names both broken promises."""
    r, summary, _, doc, unsure = drill_measured_quietly(
        tmp_path, *SHORT, "--drills", "kill,restart", "--max-fails", "0",
        "--server-args", "--not-ready respond --drain-grace-s 1")
    # 3: broken; 4 (inconclusive) only when asrtk marked both broken drills doubtful, twice
    expected = 4 if set(unsure) == {"kill", "restart"} else 3
    assert r.returncode == expected, (unsure, r.stdout[-3000:] + r.stderr[-3000:])
    broken = [line for line in r.stderr.splitlines() if line.startswith("broken: ")]
    assert any(line.startswith("broken: kill: nginx stops sending to it: BROKEN") and "max_fails=0" in line
               for line in broken), r.stderr
    assert any(line.startswith("broken: restart: a rolling restart") and "http_503" in line for line in broken), r.stderr
    assert [d["passed"] for d in doc["drills"]] == [False, False]
    assert summary["exit_code"] == r.returncode


def test_a_remote_target_runs_the_hooks_and_reports_unknown_bounds(
        tmp_path: Path, start_server: Callable[..., EmbeddedServer]) -> None:
    srv = start_server(extra_args=["--threads", "1"])
    marker = tmp_path / "hook-ran"
    conf = tmp_path / "lb.conf"
    conf.write_text("upstream u { server 10.0.0.1:80 max_fails=2 fail_timeout=4s; server 10.0.0.2:80; }\n"
                    "server { listen 80; proxy_next_upstream error timeout; location / { proxy_pass http://u; } }\n")
    r, summary, _ = drill(tmp_path, "--target", srv.url, "--drills", "kill", "--inject", f"kill=touch {marker}",
                          "--nginx-conf", str(conf), "--rate", "5", "--settle", "1s", "--observe", "2s")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert marker.exists()
    (kill,) = summary["drills"]
    assert kill["passed"] is None and kill["errors"] == 0 and kill["error_bound"] is None
    assert kill["recovery_bound_s"] == 5.0  # fail_timeout 4 s from --nginx-conf + 1 s buckets
    assert any("kill.errors" in line or "client errors" in line for line in summary["unknown"])
    assert [e["action"] for e in kill["events"]] == ["hook", "hook_done"]


def test_a_failing_hook_stops_the_drill_with_exit_1(tmp_path: Path, start_server: Callable[..., EmbeddedServer]) -> None:
    srv = start_server(extra_args=["--threads", "1"])
    r, _summary, _ = drill(tmp_path, "--target", srv.url, "--drills", "kill", "--inject", "kill=exit 7",
                           "--rate", "5", "--settle", "1s", "--observe", "1s")
    assert r.returncode == 1 and "--inject kill: the command exited 7" in r.stderr, r.stderr
