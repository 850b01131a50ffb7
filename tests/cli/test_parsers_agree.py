"""Every command gives the same answer for the same SLO, error-rate, duration and host string.

Table-driven over the commands that take each value: the run each command would start is
replaced by a capture of what it was given, so nothing generates load. Valid strings must
parse to the same value everywhere; invalid ones must be refused everywhere with exit 2 and
the same one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from toolkit.cli.main import app

runner = CliRunner()


class Captured(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__("captured")
        self.value = value


def _raise(getter):  # type: ignore[no-untyped-def]
    def fake(*args: Any, **kwargs: Any) -> Any:
        raise Captured(getter(*args, **kwargs))

    return fake


CSV = "workers,qps,p95_s,error_rate\n1,10,0.5,0\n1,20,0.9,0\n1,30,1.8,0\n"


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    p = tmp_path / "plan.yaml"
    p.write_text(yaml.safe_dump({"schema": "asrtk.plan/v1", "target": {"qps": 10, "scenario": "mobile"},
                                 "expected": {"per_node_rps": 5.0},
                                 "fleet": [{"address": "127.0.0.1:9", "weight": 1}]}))
    return p


def run(args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[int, str, Any]:
    """(exit code, stderr, captured value) of ``asrtk ARGS`` with every run replaced by a capture."""
    import toolkit.cli.sweep
    import toolkit.generators
    import toolkit.runs.bench
    import toolkit.runs.drill
    import toolkit.runs.plan
    import toolkit.runs.validate

    monkeypatch.setattr(toolkit.runs.bench, "run_bench", _raise(lambda cfg: cfg))
    monkeypatch.setattr(toolkit.runs.drill, "run_drill", _raise(lambda cfg: cfg))
    monkeypatch.setattr(toolkit.cli.sweep, "_run_with_progress", _raise(lambda cfg, _run, _quiet: cfg))
    monkeypatch.setattr(toolkit.runs.plan, "plan_and_write", _raise(lambda req, inputs, out: req))
    monkeypatch.setattr(toolkit.runs.validate, "run_validation", _raise(lambda path, target, **kw: kw))
    monkeypatch.setattr(toolkit.generators, "generate", _raise(lambda kind, spec, k8s_options=None: spec))
    r = runner.invoke(app, args)
    captured = r.exception.value if isinstance(r.exception, Captured) else None
    return r.exit_code, r.stderr, captured


def _commands(tmp_path: Path, plan_file: Path) -> dict[str, dict[str, Any]]:
    csv = tmp_path / "m.csv"
    csv.write_text(CSV)
    gen = ["generate", "nginx", "--upstream", "127.0.0.1:9", "--target-qps", "5", "--out", str(tmp_path / "g")]
    return {
        "slo": {
            "sweep": (["sweep", "-s", "mobile", "--slo"], lambda cfg: (cfg.policy.slo_percentile, cfg.policy.slo_latency_s)),
            "plan": (["plan", "--target-qps", "5", "--measurements", str(csv), "--out", str(tmp_path), "--slo"],
                     lambda req: (req.slo_percentile, req.slo_latency_s)),
            "generate": ([*gen, "--slo"], lambda spec: (spec.slo_percentile, spec.slo_latency_s)),
        },
        "error_rate": {
            "sweep": (["sweep", "-s", "mobile", "--max-error-rate"], lambda cfg: cfg.policy.max_error_rate),
            "plan": (["plan", "--target-qps", "5", "--measurements", str(csv), "--out", str(tmp_path),
                      "--max-error-rate"], lambda req: req.max_error_rate),
            "generate": ([*gen, "--max-error-rate"], lambda spec: spec.max_error_rate),
        },
        "duration": {
            "bench --duration": (["bench", "-s", "mobile", "--duration"], lambda cfg: cfg.scenario.duration_s),
            "sweep --step-duration": (["sweep", "-s", "mobile", "--step-duration"],
                                      lambda cfg: cfg.policy.step_duration_s),
            "plan validate --duration": (["plan", "validate", str(plan_file), "--duration"],
                                         lambda kw: kw["duration_s"]),
            "drill --overload-for": (["drill", "--overload-for"], lambda cfg: cfg.overload_s),
            "drill --down": (["drill", "--down"], lambda cfg: cfg.down_s),
        },
        "warmup": {
            "bench --warmup": (["bench", "-s", "mobile", "--warmup"], lambda cfg: cfg.scenario.warmup_s),
            "sweep --warmup": (["sweep", "-s", "mobile", "--warmup"], lambda cfg: cfg.warmup_s),
        },
        "hosts": {
            "generate --upstream": (["generate", "nginx", "--target-qps", "5", "--out", str(tmp_path / "g"),
                                     "--upstream"], lambda spec: (spec.upstreams[0].address, spec.upstreams[0].weight)),
            "generate --backup": (["generate", "nginx", "--target-qps", "5", "--out", str(tmp_path / "g"),
                                   "--upstream", "127.0.0.2:1", "--backup"],
                                  lambda spec: (spec.upstreams[1].address, spec.upstreams[1].weight)),
            "generate --hosts": (["generate", "nginx", "--target-qps", "5", "--out", str(tmp_path / "g"), "--hosts"],
                                 lambda spec: (spec.upstreams[0].address, spec.upstreams[0].weight)),
        },
    }


VALID = [
    ("slo", "p95=2s", (0.95, 2.0)),
    ("slo", "p99=800ms", (0.99, 0.8)),
    ("slo", "p99.9=0.5", (0.999, 0.5)),
    ("slo", "P90 = 1.5s", (0.9, 1.5)),
    ("error_rate", "1%", 0.01),
    ("error_rate", "0.005", 0.005),
    ("duration", "20", 20.0),
    ("duration", "20s", 20.0),
    ("duration", "500ms", 0.5),
    ("duration", "2m", 120.0),
    ("warmup", "0", 0.0),
    ("warmup", "1500ms", 1.5),
    ("hosts", "gpu-1:8000:3", ("gpu-1:8000", 3)),
    ("hosts", "[::1]:9000", ("[::1]:9000", 1)),
]

INVALID = [
    ("slo", "p40=2s", "the percentile must be between p50 and p99.99"),
    ("slo", "p95=fast", "must be a duration like 20s"),
    ("slo", "95=2s", "must look like p95=2s"),
    ("error_rate", "150%", "must be between 0% and 100%"),
    ("error_rate", "lots", "must be a ratio like 1% or 0.01"),
    ("duration", "0", "must be > 0"),
    ("duration", "20 parsecs", "must be a duration like 20s"),
    ("warmup", "-1s", "must be a duration like 20s"),
    ("hosts", "gpu-1", "is not HOST:PORT[:WEIGHT]"),
    ("hosts", "gpu-1:70000", "the port must be 1-65535"),
    ("hosts", "gpu-1:8000:0", "the weight must be an integer >= 1"),
]


@pytest.mark.parametrize("kind, text, expected", VALID)
def test_every_command_parses_a_value_the_same(kind: str, text: str, expected: Any, tmp_path: Path,
                                               plan_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (args, get) in _commands(tmp_path, plan_file)[kind].items():
        code, err, captured = run([*args, text], monkeypatch, tmp_path)
        assert captured is not None, f"{name} {text!r}: exit {code} {err}"
        assert get(captured) == pytest.approx(expected), name


@pytest.mark.parametrize("kind, text, message", INVALID)
def test_every_command_refuses_a_bad_value_the_same(kind: str, text: str, message: str, tmp_path: Path,
                                                    plan_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, (args, _get) in _commands(tmp_path, plan_file)[kind].items():
        code, err, captured = run([*args, text], monkeypatch, tmp_path)
        assert captured is None, f"{name} accepted {text!r}"
        assert code == 2 and err.startswith("error: ") and message in err and "\n" == err[-1] and err.count("\n") == 1, \
            f"{name} {text!r}: exit {code}: {err}"


def test_an_error_budget_of_zero_is_a_value_for_every_command_but_no_alert_budget(
        tmp_path: Path, plan_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cmds = _commands(tmp_path, plan_file)["error_rate"]
    for name in ("sweep", "plan"):
        args, get = cmds[name]
        _code, err, captured = run([*args, "0"], monkeypatch, tmp_path)
        assert captured is not None and get(captured) == 0.0, (name, err)
    code, err, _ = run([*cmds["generate"][0], "0"], monkeypatch, tmp_path)
    assert code == 2 and "0 leaves none" in err
