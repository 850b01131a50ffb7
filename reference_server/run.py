"""Process launch: bind the socket, run one worker in-process or supervise N worker processes.

The parent binds the listening socket (so ``--port 0`` works and every worker shares
it) and logs ``listening on http://HOST:PORT``. With ``--workers N > 1`` it starts N
``python -m reference_server.run --worker-fd FD`` processes, each with its own ONNX
Runtime sessions, and sets ``PROMETHEUS_MULTIPROC_DIR`` so /metrics aggregates them.
A worker that dies is restarted while the others keep serving, at most
``MAX_RESTARTS`` times within ``RESTART_WINDOW_S`` (all workers together); past that, or
when a worker cannot load its models, the supervisor stops the others and exits 1.

SIGTERM (or SIGINT): /ready turns 503 and new work gets 503 ``draining`` for at least
--drain-grace-s while in-flight requests finish (at most --drain-timeout-s); then the
worker stops accepting, answers what the kernel had already queued, closes the listener
(so new connections are refused, never reset: listener.py) and exits 0. A second signal exits at once.
With ``--not-ready refuse`` the listener closes at the signal (and listens only once the
models are loaded): a proxy with passive health checks sees refused connections, which it
retries elsewhere, instead of 503s to requests it has sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator

from reference_server.config import ServerConfig
from reference_server.listener import LOCK_ENV, AcceptingLock, take_queued
from toolkit.errors import UsageError

log = logging.getLogger("reference_server")
CONFIG_ENV = "ASRTK_SERVE_CONFIG"

# Restart policy of the supervisor (docs/server.md, "Execution model"): a crash loop must
# end in an exit that the service manager sees, not in a server that restarts forever.
MAX_RESTARTS = 5  # worker restarts allowed within RESTART_WINDOW_S, all workers together
RESTART_WINDOW_S = 60.0
# A supervised worker whose models failed to load exits with this code: a restart would
# fail the same way, so the supervisor gives up instead (without a supervisor the code is 1).
EXIT_LOAD_FAILED = 78  # EX_CONFIG in sysexits.h
# After the listener is closed, connections accepted in the last moment get this long for
# their request to arrive: closing a socket with unread data would reset it.
ACCEPT_LINGER_S = 0.2


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
    from reference_server.logpolicy import LogPolicy

    handler = _CurrentStderr()
    handler.addFilter(LogPolicy())  # no body, audio, header value or key in any log (docs/server.md)
    logging.basicConfig(
        level=level.upper(), handlers=[handler], force=True,
        format="%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s",
    )


def bind(host: str, port: int, listen: bool = True) -> socket.socket:
    """The server's socket, bound; listening unless ``listen`` is False (``--not-ready refuse`` with
    one worker: connections are refused until the models are loaded, then uvicorn listens)."""
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
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(cfg: ServerConfig) -> int:
    """Run the server until it is told to stop; returns the process exit code."""
    setup_logging(cfg.log_level)
    if cfg.device == "cuda":  # fail fast, before binding, with a one-line reason
        from reference_server.providers import choose

        choose("cuda")
    refuse = cfg.not_ready == "refuse"
    sock = bind(cfg.host, cfg.port, listen=not (refuse and cfg.workers == 1))
    host, port = sock.getsockname()[:2]
    # printed at any --log-level: EmbeddedServer and people read the real port (--port 0) here
    print(f"asrtk serve: listening on http://{host}:{port} (workers {cfg.workers}, model {cfg.model})",
          file=sys.stderr, flush=True)
    if cfg.workers == 1:
        return run_worker(cfg, sock, listen_when_ready=refuse)
    return supervise(cfg, sock)


def _make_server(
    cfg: ServerConfig, app: object, signals: tuple[int, ...], *, load_failed_code: int = 1, listen_when_ready: bool = False,
) -> object:
    import uvicorn

    from reference_server.app import ServerState
    from reference_server.protocols import protocol_class

    state: ServerState = app.state.server  # type: ignore[attr-defined]

    class DrainingServer(uvicorn.Server):
        """uvicorn closes its socket on the first signal; we keep serving /ready 503 while draining,
        then close the listener without resetting what is queued on it.

        With ``listen_when_ready`` (a replacement for a dead worker, whose siblings serve
        meanwhile, or any worker with ``--not-ready refuse``) it accepts connections only once
        its models are loaded, so no client of the shared socket gets 503 ``not_ready`` from it.
        """

        exit_code = 0

        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self._not_listening: list[socket.socket] = []
            self._sockets: list[socket.socket] = []
            self._refusing = False
            self._accepting = AcceptingLock.from_env()  # shared with the sibling workers, if any

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
            if state.draining or self._refusing:
                log.warning("second %s: exiting now", signal.Signals(sig).name)
                self.should_exit = self.force_exit = True
                return
            log.info("%s received", signal.Signals(sig).name)
            if cfg.not_ready == "refuse":
                self._refusing = True  # a second signal exits at once
                asyncio.get_running_loop().create_task(self._refuse_then_drain())
                return
            state.start_drain()
            asyncio.get_running_loop().create_task(self._drain())

        async def _refuse_then_drain(self) -> None:
            """``--not-ready refuse``: a proxy with passive health checks learns of a drain only
            from a failed attempt, and a refused connection is the one failure it retries safely on
            another server (a 503 to a POST it has sent is not retried). So: stop listening at
            once (what the kernel had queued is accepted and served), close idle keep-alive
            connections, let busy ones close after their response, and only then refuse work."""
            await self._close_listeners(self._sockets)
            for conn in list(self.server_state.connections):
                conn.shutdown()  # idle: closed now; busy: Connection: close after the response
            log.info("listener closed: new connections are refused; draining %d in-flight request(s)", state.inflight)
            state.start_drain()
            await self._drain()

        async def _drain(self) -> None:
            start = time.monotonic()
            grace_end, deadline = start + cfg.drain_grace_s, start + cfg.drain_timeout_s
            if cfg.drain_grace_s:
                log.info("draining for at least %.1f s (--drain-grace-s) before the listener closes", cfg.drain_grace_s)
            while True:
                now = time.monotonic()
                if now >= grace_end and (state.inflight == 0 or now >= deadline):
                    break
                await asyncio.sleep(0.05)
            if state.inflight:
                log.warning("drain timeout: %d request(s) still in flight are cut off", state.inflight)
            else:
                log.info("drained: no request in flight, shutting down")
            self.should_exit = True

        def _protocol(self) -> asyncio.Protocol:
            # what uvicorn's startup() builds for every accepted connection
            return self.config.http_protocol_class(  # type: ignore[call-arg]
                config=self.config, server_state=self.server_state, app_state=self.lifespan.state,
            )

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            self._sockets = list(sockets or [])
            if listen_when_ready and sockets:
                self._not_listening, sockets = list(sockets), []
            elif sockets:
                self._accepting.accepting()
            await super().startup(sockets=sockets)

        async def on_tick(self, counter: int) -> bool:
            if state.fatal and not self.should_exit:
                self.exit_code = load_failed_code
                self.should_exit = True
            if self._not_listening and state.ready:
                loop = asyncio.get_running_loop()
                self._accepting.accepting()
                for sock in self._not_listening:
                    self.servers.append(await loop.create_server(self._protocol, sock=sock, backlog=self.config.backlog))
                self._not_listening = []
                log.info("models ready: accepting connections")
            return await super().on_tick(counter)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await self._close_listeners(sockets or [])
            await super().shutdown(sockets=sockets)

        async def _close_listeners(self, sockets: list[socket.socket]) -> None:
            """Close the listening sockets without resetting the connections queued on them.

            Closing a listener resets every connection the kernel completed but nobody
            accepted yet. So: stop the event loop's accepting; if no sibling worker accepts any
            more, stop new handshakes and let those under way complete (listener.py); accept
            what is queued, close (new connections are then refused, or go to a sibling worker
            still listening), and let the last ones send their request before uvicorn closes
            idle connections. (``asyncio.run`` gives a selector loop: its servers accept
            through a loop reader.)
            """
            loop = asyncio.get_running_loop()
            listening = [s for s in sockets if s.fileno() != -1 and s not in self._not_listening]
            for sock in listening:
                loop.remove_reader(sock.fileno())
            queued = await take_queued(listening, last=bool(listening) and self._accepting.stopped_last())
            for server in self.servers:
                server.close()
            for sock in sockets:
                sock.close()
            for conn in queued:
                with contextlib.suppress(OSError):  # the client may have gone already
                    await loop.connect_accepted_socket(self._protocol, conn)
            if queued or self.server_state.connections:
                await asyncio.sleep(ACCEPT_LINGER_S)

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        access_log=False,  # request lines could carry secrets in query strings; /metrics counts requests
        log_config=None,
        log_level=cfg.log_level,
        lifespan="on",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=30,
        server_header=False,
        http=protocol_class(cfg.max_header_bytes),  # JSON 400s, 431 past --max-header-kb (protocols.py)
        h11_max_incomplete_event_size=cfg.max_header_bytes,
    )
    return DrainingServer(config)


def run_worker(cfg: ServerConfig, sock: socket.socket, supervised: bool = False, listen_when_ready: bool = False) -> int:
    from reference_server.app import create_app

    if supervised:  # Ctrl+C reaches the whole process group; the supervisor forwards one SIGTERM instead
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    app = create_app(cfg)
    server = _make_server(
        cfg, app, (signal.SIGTERM,) if supervised else (signal.SIGTERM, signal.SIGINT),
        load_failed_code=EXIT_LOAD_FAILED if supervised else 1, listen_when_ready=listen_when_ready,
    )
    asyncio.run(server.serve(sockets=[sock]))  # type: ignore[attr-defined]
    code = int(server.exit_code)  # type: ignore[attr-defined]
    log.info("worker exiting with code %d", code)
    return code


def describe_exit(returncode: int) -> str:
    """``exit code 1`` or ``signal SIGKILL``, from a ``Popen.returncode``."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


class RestartBudget:
    """At most ``limit`` restarts within any ``window_s``; the caller passes the time (no clock here)."""

    def __init__(self, limit: int = MAX_RESTARTS, window_s: float = RESTART_WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def spend(self, now: float) -> bool:
        """Count one restart at ``now`` and return True, or return False when the budget is spent."""
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True


class Supervisor:
    """Keeps ``cfg.workers`` worker processes accepting on one listening socket.

    Signal handlers only record the signal; the loop in :meth:`run` does the work (a
    handler running between spawning a worker and recording it would miss that worker).
    """

    def __init__(
        self, cfg: ServerConfig, sock: socket.socket, env: dict[str, str], on_restart: Callable[[], None],
        budget: RestartBudget | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.sock = sock
        self.fd = sock.fileno()
        self.env = env
        self.on_restart = on_restart
        self.budget = budget or RestartBudget()
        self.clock = clock
        self.workers: list[subprocess.Popen[bytes]] = []
        self.stopping = False
        self.code = 0
        self._signals: list[int] = []
        self._wake_r = -1

    def _spawn(self, replacement: bool) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "reference_server.run", "--worker-fd", str(self.fd)]
        if replacement or self.cfg.not_ready == "refuse":
            cmd.append("--listen-when-ready")
        return subprocess.Popen(cmd, pass_fds=[self.fd], env=self.env, stdin=subprocess.DEVNULL)

    def _on_signal(self, sig: int, _frame: object) -> None:
        self._signals.append(sig)

    def _stop(self, code: int) -> None:
        """Close our copy of the listener (a queue nobody accepts from would reset its
        connections later) and SIGTERM every live worker; called once per signal received."""
        self.code = self.code or code
        self.stopping = True
        self.sock.close()
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def _on_worker_exit(self, i: int, p: subprocess.Popen[bytes]) -> None:
        from reference_server.metrics import mark_process_dead

        rc = p.returncode
        mark_process_dead(p.pid)
        if self.stopping:
            return
        how = describe_exit(rc)
        if rc == EXIT_LOAD_FAILED:
            log.error("worker %d could not load its models (%s, reason logged above); not restarting it: "
                      "stopping the others", p.pid, how)
            self._stop(1)
        elif not self.budget.spend(self.clock()):
            log.error("worker %d died (%s): already %d restarts within %.0f s, giving up: stopping the others",
                      p.pid, how, self.budget.limit, self.budget.window_s)
            self._stop(1)
        else:
            self.workers[i] = self._spawn(replacement=True)
            self.on_restart()
            log.warning("worker %d died (%s); restarted it as pid %d", p.pid, how, self.workers[i].pid)

    def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], timeout_s)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    def run(self) -> int:
        """Start the workers and supervise them until they have all exited; returns the exit code."""
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(wake_w, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)  # SIGCHLD and SIGTERM end the select() at once
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        old[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        try:
            self.workers = [self._spawn(replacement=False) for _ in range(self.cfg.workers)]
            log.info("started %d workers: pids %s", len(self.workers), " ".join(str(p.pid) for p in self.workers))
            handled: set[subprocess.Popen[bytes]] = set()  # by identity: a replacement may reuse a dead pid
            while True:
                while self._signals:
                    sig = self._signals.pop(0)
                    log.info("%s received: %s", signal.Signals(sig).name,
                             "forwarding it to the workers again" if self.stopping else "stopping the workers")
                    self._stop(0)
                for i, p in enumerate(self.workers):
                    if p not in handled and p.poll() is not None:
                        handled.add(p)
                        self._on_worker_exit(i, p)
                if self.stopping and all(p.poll() is not None for p in self.workers):
                    break
                self._wait(1.0)
            # a worker may die of our SIGTERM before it has installed its handler
            if any(p.returncode not in (0, -signal.SIGTERM) for p in self.workers):
                self.code = self.code or 1
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for s, h in old.items():
                signal.signal(s, h)
            os.close(self._wake_r)
            os.close(wake_w)
            for p in self.workers:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        return self.code


def supervise(cfg: ServerConfig, sock: socket.socket) -> int:
    from reference_server.metrics import worker_restarts_counter

    prom_dir = tempfile.mkdtemp(prefix="asrtk-prom-")
    try:
        restarts = worker_restarts_counter(prom_dir)  # sets PROMETHEUS_MULTIPROC_DIR here, workers inherit it
        env = dict(os.environ, **{CONFIG_ENV: cfg.to_json(), LOCK_ENV: os.path.join(prom_dir, "listener.lock")})
        code = Supervisor(cfg, sock, env, on_restart=restarts.inc).run()
    finally:
        sock.close()
        shutil.rmtree(prom_dir, ignore_errors=True)
    log.info("supervisor exiting with code %d", code)
    return code


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reference_server.run")
    parser.add_argument("--worker-fd", type=int, required=True)
    parser.add_argument("--listen-when-ready", action="store_true",
                        help="accept connections only once the models are loaded (a replacement worker)")
    args = parser.parse_args(argv)
    cfg = ServerConfig.from_json(os.environ[CONFIG_ENV])
    setup_logging(cfg.log_level)
    sock = socket.socket(fileno=args.worker_fd)
    return run_worker(cfg, sock, supervised=True, listen_when_ready=args.listen_when_ready)


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
