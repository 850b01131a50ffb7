"""The reference server's command line: the ``serve`` command that ``asrtk serve`` registers and
that ``python -m reference_server`` runs. Flags map one to one onto :class:`ServerConfig`.

This module depends on nothing of ``toolkit.cli`` (the dependency points from the toolkit's CLI
to the server, never back).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one (printed in the log).")] = 8000,
    model: Annotated[str, typer.Option(help="Model preset (tiny, small, ...) or a path to a custom ASR .onnx file.")] = "tiny",
    device: Annotated[str, typer.Option(help="auto (CUDA only if NVML sees a GPU and the CUDA provider loads), cpu or cuda.")] = "auto",
    workers: Annotated[int, typer.Option(help="Worker processes, each with its own ONNX Runtime sessions.")] = 1,
    max_batch: Annotated[int, typer.Option(help="A batch closes at this many items ...")] = 8,
    max_wait_ms: Annotated[float, typer.Option(help="... or when its oldest item has waited this long.")] = 10.0,
    max_queue: Annotated[int, typer.Option(help="Items queued per model before requests get 503 + Retry-After.")] = 64,
    max_audio_s: Annotated[float, typer.Option(help="Longest accepted audio, seconds (longer: 413 audio_too_long).")] = 1200.0,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, MiB (larger: 413 body_too_large).")] = 100.0,
    data_dir: Annotated[Optional[Path], typer.Option(help="Directory whose files /api/predict/ may name by path; without it paths are refused.")] = None,
    api_key: Annotated[Optional[str], typer.Option(help="Require 'Authorization: Bearer KEY' on the APIs (/health, /ready, /metrics stay open). Printable ASCII; required when --host is not loopback.", envvar="ASRTK_API_KEY")] = None,
    request_timeout_s: Annotated[float, typer.Option(help="Deadline per request; past it: 504 deadline_exceeded.")] = 300.0,
    drain_timeout_s: Annotated[float, typer.Option(help="On SIGTERM, wait at most this long for in-flight requests.")] = 30.0,
    drain_grace_s: Annotated[float, typer.Option(help="On SIGTERM, keep answering /ready with 503 draining for at least this long before the listener closes, so a load balancer that polls /ready sees the drain (set it to the balancer's check interval).")] = 0.0,
    not_ready: Annotated[str, typer.Option(help="What a client gets while the server is not ready (loading, or draining after SIGTERM): respond (listen and answer 503 starting/draining, for a load balancer that polls /ready) or refuse (listen only while ready: on SIGTERM stop listening at once and close idle keep-alive connections, so a proxy with passive health checks such as nginx retries on another server; in-flight requests still finish).")] = "respond",
    memory_budget_mb: Annotated[float, typer.Option(help="Per worker: memory that admitted requests may hold (body, decoded and resampled audio, estimated before the body is read and checked again from the audio header). Beyond it: 503 queue_full. A request alone is always admitted.")] = 1024.0,
    max_streams: Annotated[int, typer.Option(help="Per worker: concurrent /ws/asr sessions; one more is closed with 1013 (try again later).")] = 32,
    stream_idle_timeout_s: Annotated[float, typer.Option(help="A /ws/asr session that sends nothing for this long gets an error frame and close 1008.")] = 30.0,
    max_stream_s: Annotated[float, typer.Option(help="Longest /ws/asr session, wall-clock seconds; past it: error frame and close 1008.")] = 1800.0,
    max_header_kb: Annotated[float, typer.Option(help="Largest request line plus headers, KiB (larger: 431).")] = 32.0,
    cache: Annotated[Optional[str], typer.Option(help="Result cache for TTS, emotion and ASR answers: memory[:SIZE] (in-process LRU, default 256MiB), redis://HOST:PORT/DB (shared; down or slow = a miss, never a failed request), or both comma-separated (memory in front of Redis). Responses carry X-Cache: hit|miss.")] = None,
    cache_ttl_s: Annotated[float, typer.Option(help="Lifetime of a cached answer, seconds (the TTS service's 24 h by default).")] = 86400.0,
    threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime intra-op threads per session (default: ORT's choice, one per core). On a small CPU box with a light model, 1 leaves a core for HTTP.")] = None,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info or debug.")] = "info",
) -> None:
    """Run the reference inference server.

    Examples:

      asrtk serve                                  # tiny preset on http://127.0.0.1:8000

      asrtk serve --model small --workers 2 --max-batch 16 --port 9000

      asrtk serve --api-key s3cret --data-dir /srv/audio

      asrtk serve --cache memory:512MiB,redis://127.0.0.1:6379/0
    """
    from reference_server.config import ServerConfig
    from reference_server.run import serve as run_serve

    cfg = ServerConfig(
        host=host, port=port, model=model, device=device, workers=workers, max_batch=max_batch,
        max_wait_ms=max_wait_ms, max_queue=max_queue, max_audio_s=max_audio_s, max_body_mb=max_body_mb,
        data_dir=str(data_dir) if data_dir is not None else None, api_key=api_key,
        request_timeout_s=request_timeout_s, drain_timeout_s=drain_timeout_s, drain_grace_s=drain_grace_s,
        not_ready=not_ready, memory_budget_mb=memory_budget_mb, max_streams=max_streams, stream_idle_timeout_s=stream_idle_timeout_s,
        max_stream_s=max_stream_s, max_header_kb=max_header_kb, cache=cache, cache_ttl_s=cache_ttl_s, threads=threads, log_level=log_level,
    )
    code = run_serve(cfg)
    if code:
        raise typer.Exit(code)


def main(argv: list[str] | None = None) -> int:
    """``python -m reference_server [FLAGS]``: errors are one line on stderr and an exit code."""
    import functools

    from toolkit.errors import AsrtkError

    @functools.wraps(serve)
    def guarded(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return serve(*args, **kwargs)
        except AsrtkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(guarded)
    try:
        app(args=argv, prog_name="python -m reference_server")
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
