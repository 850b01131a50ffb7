"""What a person watches during a run: a rich live table, or plain lines for CI logs."""

from __future__ import annotations

from typing import Any


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def snapshot(scenario: Any, horizon_s: float, agg: Any, telemetry: Any, now_s: float) -> dict[str, Any]:
    """The figures shown live (pure given its inputs)."""
    recent = agg.recent(now_s)
    last = telemetry.rows[-1] if telemetry.rows else {}
    gpu = [v for k, v in last.items() if k.endswith("_util_ratio") and v is not None]
    errors = sum(d["errors"] for ivs in agg.intervals.values() for d in ivs.values())
    return {
        "elapsed_s": now_s, "remaining_s": max(0.0, horizon_s - now_s),
        "phase": "warm-up" if now_s < scenario.warmup_s else "measure",
        "errors_total": errors,
        "gpu_util": (sum(gpu) / len(gpu)) if gpu else None,
        "loadgen_cpu": last.get("loadgen_cpu_percent"),
        # other processes + CPU steal in the last sample: what would make this run disagree with a rerun
        "other_cores": (None if last.get("other_cpu_cores") is None and last.get("steal_cpu_cores") is None
                        else (last.get("other_cpu_cores") or 0.0) + (last.get("steal_cpu_cores") or 0.0)),
        **recent,
    }


def plain_line(s: dict[str, Any]) -> str:
    gpu = "-" if s["gpu_util"] is None else f"{s['gpu_util'] * 100:.0f}%"
    cpu = "-" if s["loadgen_cpu"] is None else f"{s['loadgen_cpu']:.0f}%"
    return (f"[{s['elapsed_s']:6.1f}s {s['phase']:>7}] offered {s['offered_rps']:.2f}/s "
            f"achieved {s['achieved_rps']:.2f}/s inflight {s['inflight']} "
            f"p50 {_ms(s['p50_s'])} p95 {_ms(s['p95_s'])} p99 {_ms(s['p99_s'])} (last 10 s) "
            f"errors {s['errors_total']} gpu {gpu} loadgen-cpu {cpu} other-work {_cores(s['other_cores'])} "
            f"remaining {s['remaining_s']:.0f}s")


def _cores(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} cores"


class QuietView:
    """``--quiet``: one plain line every few seconds."""

    def __init__(self, scenario: Any, horizon_s: float, agg: Any, telemetry: Any) -> None:
        self.args = (scenario, horizon_s, agg, telemetry)

    def start(self) -> None:
        pass

    def update(self, now_s: float) -> None:
        print(plain_line(snapshot(*self.args, now_s)), flush=True)

    def stop(self) -> None:
        pass


class LiveView:
    """A rich table refreshed in place (stderr), driven by the caller's greenlet."""

    def __init__(self, scenario: Any, horizon_s: float, agg: Any, telemetry: Any) -> None:
        from rich.console import Console

        self.args = (scenario, horizon_s, agg, telemetry)
        self.console = Console(stderr=True)
        self._live = None

    def _render(self, now_s: float) -> Any:
        from rich.table import Table

        s = snapshot(*self.args, now_s)
        t = Table(title=f"asrtk bench: {self.args[0].name} ({s['phase']})", show_header=False, box=None)
        t.add_column(style="bold")
        t.add_column()
        t.add_row("elapsed / remaining", f"{s['elapsed_s']:.0f} s / {s['remaining_s']:.0f} s")
        t.add_row("offered / achieved", f"{s['offered_rps']:.2f} / {s['achieved_rps']:.2f} req/s")
        t.add_row("in flight", str(s["inflight"]))
        t.add_row("latency (last 10 s)", f"p50 {_ms(s['p50_s'])}  p95 {_ms(s['p95_s'])}  p99 {_ms(s['p99_s'])}")
        t.add_row("errors", str(s["errors_total"]))
        t.add_row("GPU util", "-" if s["gpu_util"] is None else f"{s['gpu_util'] * 100:.0f}%")
        t.add_row("load-generator CPU", "-" if s["loadgen_cpu"] is None else f"{s['loadgen_cpu']:.0f}%")
        t.add_row("other work on this host", _cores(s["other_cores"]) + " (other processes + CPU steal)")
        return t

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(self._render(0.0), console=self.console, auto_refresh=False, transient=True)
        self._live.start()

    def update(self, now_s: float) -> None:
        if self._live is not None:
            self._live.update(self._render(now_s), refresh=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
