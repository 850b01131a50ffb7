"""Process launch: bind the socket, run one worker in-process or supervise N worker processes.

The parent binds the listening socket (so ``--port 0`` works and every worker shares
it) and logs ``listening on http://HOST:PORT``. With ``--workers N > 1`` it starts N
``python -m reference_server.run --worker-fd FD`` processes, each with its own ONNX
Runtime sessions, and sets ``PROMETHEUS_MULTIPROC_DIR`` so /metrics aggregates them.

SIGTERM (or SIGINT): /ready turns 503 and new work gets 503 ``draining`` while in-flight
requests finish (at most --drain-timeout-s), then the process exits 0. A second signal
exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from reference_server.config import ServerConfig
from toolkit.errors import UsageError

log = logging.getLogger("reference_server")
CONFIG_ENV = "ASRTK_SERVE_CONFIG"


class _NoRequestLines(logging.Filter):
    """uvicorn logs WebSocket handshakes with their full path; paths and queries may carry secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith('%s - "WebSocket') or msg in ("connection open", "connection closed"))


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now, so a handler installed while stderr was
    redirected (a test runner, a CLI harness) never writes to a closed stream later."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), handlers=[_CurrentStderr()], force=True,
        format="%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s",
    )
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(_NoRequestLines())


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host") from exc
    # accepted connections inherit it: without it a response written as headers + body waits
    # ~40 ms for the client's delayed ACK (Nagle), per request
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(cfg: ServerConfig) -> int:
    """Run the server until it is told to stop; returns the process exit code."""
    setup_logging(cfg.log_level)
    if cfg.device == "cuda":  # fail fast, before binding, with a one-line reason
        from reference_server.providers import choose

        choose("cuda")
    sock = bind(cfg.host, cfg.port)
    host, port = sock.getsockname()[:2]
    # printed at any --log-level: EmbeddedServer and people read the real port (--port 0) here
    print(f"asrtk serve: listening on http://{host}:{port} (workers {cfg.workers}, model {cfg.model})",
          file=sys.stderr, flush=True)
    if cfg.workers == 1:
        return run_worker(cfg, sock)
    return supervise(cfg, sock)


def _make_server(cfg: ServerConfig, app: object, signals: tuple[int, ...]) -> object:
    import uvicorn

    from reference_server.app import ServerState

    state: ServerState = app.state.server  # type: ignore[attr-defined]

    class DrainingServer(uvicorn.Server):
        """uvicorn closes its socket on the first signal; we keep serving /ready 503 while draining."""

        exit_code = 0

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in signals:
                loop.add_signal_handler(sig, self._on_signal, sig)
            try:
                yield
            finally:
                for sig in signals:
                    loop.remove_signal_handler(sig)

        def _on_signal(self, sig: int) -> None:
            if state.draining:
                log.warning("second %s: exiting now", signal.Signals(sig).name)
                self.should_exit = self.force_exit = True
                return
            log.info("%s received", signal.Signals(sig).name)
            state.start_drain()
            asyncio.get_running_loop().create_task(self._drain())

        async def _drain(self) -> None:
            deadline = time.monotonic() + cfg.drain_timeout_s
            while state.inflight > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if state.inflight:
                log.warning("drain timeout: %d request(s) still in flight are cut off", state.inflight)
            else:
                log.info("drained: no request in flight, shutting down")
            self.should_exit = True

        async def on_tick(self, counter: int) -> bool:
            if state.fatal and not self.should_exit:
                self.exit_code = 1
                self.should_exit = True
            return await super().on_tick(counter)

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        access_log=False,  # request lines could carry secrets in query strings; /metrics counts requests
        log_config=None,
        log_level=cfg.log_level,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
        server_header=False,
    )
    return DrainingServer(config)


def run_worker(cfg: ServerConfig, sock: socket.socket, supervised: bool = False) -> int:
    from reference_server.app import create_app

    if supervised:  # Ctrl+C reaches the whole process group; the supervisor forwards one SIGTERM instead
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    app = create_app(cfg)
    server = _make_server(cfg, app, (signal.SIGTERM,) if supervised else (signal.SIGTERM, signal.SIGINT))
    asyncio.run(server.serve(sockets=[sock]))  # type: ignore[attr-defined]
    code = int(server.exit_code)  # type: ignore[attr-defined]
    log.info("worker exiting with code %d", code)
    return code


def supervise(cfg: ServerConfig, sock: socket.socket) -> int:
    prom_dir = tempfile.mkdtemp(prefix="asrtk-prom-")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=prom_dir, **{CONFIG_ENV: cfg.to_json()})
    fd = sock.fileno()
    cmd = [sys.executable, "-m", "reference_server.run", "--worker-fd", str(fd)]
    procs = [subprocess.Popen(cmd, pass_fds=[fd], env=env, stdin=subprocess.DEVNULL) for _ in range(cfg.workers)]
    log.info("started %d workers: pids %s", len(procs), " ".join(str(p.pid) for p in procs))
    stopping = False

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while any(p.poll() is None for p in procs):
            for p in procs:
                rc = p.poll()
                if rc is not None and not stopping:
                    log.error("worker %d exited with code %s; stopping the others", p.pid, rc)
                    code = rc or 1
                    forward(signal.SIGTERM, None)
            time.sleep(0.1)
        if any(p.returncode != 0 for p in procs):
            code = code or 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        sock.close()
        shutil.rmtree(prom_dir, ignore_errors=True)
    log.info("supervisor exiting with code %d", code)
    return code


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reference_server.run")
    parser.add_argument("--worker-fd", type=int, required=True)
    args = parser.parse_args(argv)
    cfg = ServerConfig.from_json(os.environ[CONFIG_ENV])
    setup_logging(cfg.log_level)
    sock = socket.socket(fileno=args.worker_fd)
    try:
        return run_worker(cfg, sock, supervised=True)
    finally:
        from reference_server.metrics import mark_process_dead

        mark_process_dead(os.getpid())


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
