"""ServerConfig: every knob of ``asrtk serve``, validated in one place."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import UsageError
from toolkit.units import is_loopback

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# What a client gets while the server is not ready (loading its models, or draining after SIGTERM;
# docs/server.md, "Lifecycle"): "respond" listens and answers 503 starting/draining, for load
# balancers that poll /ready; "refuse" listens only while ready, so connections are refused, which a
# proxy with passive health checks (nginx) retries on another server without the client seeing it.
NOT_READY_MODES = ("respond", "refuse")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "tiny"  # preset name, or a path to a custom ASR .onnx file
    device: str = "auto"
    workers: int = 1
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64
    max_audio_s: float = 1200.0
    max_body_mb: float = 100.0
    data_dir: str | None = None
    api_key: str | None = None
    request_timeout_s: float = 300.0
    drain_timeout_s: float = 30.0
    drain_grace_s: float = 0.0
    not_ready: str = "respond"
    memory_budget_mb: float = 1024.0
    max_streams: int = 32
    stream_idle_timeout_s: float = 30.0
    max_stream_s: float = 1800.0
    max_header_kb: float = 32.0
    cache: str | None = None  # memory[:SIZE], redis://HOST:PORT/DB, or both comma-separated
    cache_ttl_s: float = 86400.0
    threads: int | None = None
    log_level: str = "info"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise UsageError(msg)

        need(0 <= self.port <= 65535, f"--port must be between 0 and 65535, got {self.port}")
        need(self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda, got {self.device!r}")
        need(self.workers >= 1, f"--workers must be >= 1, got {self.workers}")
        need(self.max_batch >= 1, f"--max-batch must be >= 1, got {self.max_batch}")
        need(self.max_wait_ms >= 0, f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        need(self.max_queue >= 1, f"--max-queue must be >= 1, got {self.max_queue}")
        need(self.max_audio_s > 0, f"--max-audio-s must be > 0, got {self.max_audio_s}")
        need(self.max_body_mb > 0, f"--max-body-mb must be > 0, got {self.max_body_mb}")
        need(self.request_timeout_s > 0, f"--request-timeout-s must be > 0, got {self.request_timeout_s}")
        need(self.drain_timeout_s >= 0, f"--drain-timeout-s must be >= 0, got {self.drain_timeout_s}")
        need(self.drain_grace_s >= 0, f"--drain-grace-s must be >= 0, got {self.drain_grace_s}")
        need(self.not_ready in NOT_READY_MODES, f"--not-ready must be respond or refuse, got {self.not_ready!r}")
        need(self.not_ready != "refuse" or self.drain_grace_s == 0,
             "--drain-grace-s keeps the listener open for a load balancer that polls /ready, --not-ready refuse "
             "closes it at once for a proxy with passive health checks (nginx): pick one")
        need(self.memory_budget_mb > 0, f"--memory-budget-mb must be > 0, got {self.memory_budget_mb}")
        need(self.max_streams >= 1, f"--max-streams must be >= 1, got {self.max_streams}")
        need(self.stream_idle_timeout_s > 0, f"--stream-idle-timeout-s must be > 0, got {self.stream_idle_timeout_s}")
        need(self.max_stream_s > 0, f"--max-stream-s must be > 0, got {self.max_stream_s}")
        need(1 <= self.max_header_kb <= 1024, f"--max-header-kb must be between 1 and 1024, got {self.max_header_kb}")
        need(self.cache_ttl_s > 0, f"--cache-ttl-s must be > 0, got {self.cache_ttl_s}")
        if self.cache is not None:
            from reference_server.cache import CacheSpecError, parse_cache

            try:
                parse_cache(self.cache)
            except CacheSpecError as exc:
                raise UsageError(str(exc)) from None
        need(self.threads is None or self.threads >= 1, f"--threads must be >= 1, got {self.threads}")
        need(self.log_level in LOG_LEVELS, f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        need(self.api_key is None or self.api_key != "", "--api-key must not be empty (leave it out to disable auth)")
        need(self.api_key is None or all(0x21 <= ord(c) <= 0x7E for c in self.api_key),
             "--api-key must be printable ASCII without spaces (it travels in an HTTP header); "
             "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        need(self.api_key is not None or is_loopback(self.host),
             f"--host {self.host} listens beyond loopback: set --api-key (or ASRTK_API_KEY) so that only "
             "clients holding the key are served")
        if self.model_is_path:
            need(Path(self.model).is_file(), f"--model {self.model} does not exist; pass a preset name or an existing .onnx file")
        else:
            from reference_server.models.presets import PRESETS

            need(self.model in PRESETS, f"--model {self.model!r} is not a preset ({', '.join(PRESETS)}) nor an .onnx file path")
        if self.data_dir is not None:
            need(Path(self.data_dir).is_dir(), f"--data-dir {self.data_dir} is not a directory; create it or fix the path")

    @property
    def memory_budget_bytes(self) -> int:
        return int(self.memory_budget_mb * 1024 * 1024)

    @property
    def max_header_bytes(self) -> int:
        return int(self.max_header_kb * 1024)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def model_is_path(self) -> bool:
        return self.model.endswith(".onnx") or "/" in self.model

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServerConfig":
        return cls(**json.loads(text))

    def replace(self, **changes: object) -> "ServerConfig":
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
