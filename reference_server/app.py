"""The FastAPI app: five speech APIs in the shapes of real services, health, readiness, metrics.

Every refusal is ``{"error": {"code", "message"}}`` with a stable code (docs/server.md).
The outermost :class:`Gate` does what must happen before a body is read: auth,
readiness/draining, queue-full, body-size limits, and the per-route request metrics.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from reference_server import audio as au
from reference_server import multipart
from reference_server.admission import BODY_FACTOR, MemoryBudget, Reservation, decoded_cost
from reference_server.logpolicy import sanitized_traceback
from reference_server.batching import DeadlineExceeded, QueueFull
from reference_server.cache import ResultCache, make_key, parse_cache, tts_text_key
from reference_server.config import ServerConfig
from reference_server.engine import Engine, join_texts, load_engine
from reference_server.metrics import ServerMetrics

log = logging.getLogger("reference_server")
OPENAPI_PATH = Path(__file__).with_name("openapi.json")

NOTE = "reference model with random weights: text is meaningless"
ROUTE_MODEL = {
    "/recognize": "asr",
    "/api/predict/": "asr",
    "/api/v1/analyze": "emotion",
    "/api/synthesize": "tts",
    "/ws/asr": "asr",
}
PARTIAL_WINDOW_S = 10.0  # partial results decode at most the last 10 s of a stream
MAX_JSON_DEPTH = 32  # deeper JSON is refused (400 invalid_json); the APIs need depth 3
WS_POLL_S = 0.25  # how often an idle stream checks for drain, idle and session timeouts
RETRY_AFTER_S = "1"

# code -> (HTTP status, reason label of asrtk_rejected_requests_total)
ERRORS: dict[str, tuple[int, str]] = {
    "invalid_json": (400, "bad_input"),
    "missing_field": (400, "bad_input"),
    "invalid_field": (400, "bad_input"),
    "invalid_base64": (400, "bad_input"),
    "file_not_found": (400, "bad_input"),
    "invalid_audio": (422, "bad_input"),
    "empty_audio": (422, "bad_input"),
    "text_empty": (422, "bad_input"),
    "text_too_long": (422, "bad_input"),
    "unknown_emotion": (422, "bad_input"),
    "audio_too_long": (413, "too_large"),
    "body_too_large": (413, "too_large"),
    "invalid_request": (400, "bad_input"),  # answered by the HTTP protocol layer (protocols.py), not counted
    "headers_too_large": (431, "too_large"),  # likewise
    "stream_idle": (408, "deadline"),
    "stream_too_long": (413, "too_large"),
    "unauthorized": (401, "unauthorized"),
    "path_not_allowed": (403, "bad_input"),
    "queue_full": (503, "queue_full"),
    "draining": (503, "draining"),
    "not_ready": (503, ""),
    "deadline_exceeded": (504, "deadline"),
    "not_found": (404, ""),
    "method_not_allowed": (405, ""),
    "internal_error": (500, ""),
}


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = ERRORS[code][0]


class BodyTooLarge(Exception):
    pass


class OverBudget(Exception):
    pass


class ServerState:
    """Lifecycle of one worker process: starting -> ready -> draining."""

    def __init__(self, cfg: ServerConfig, metrics: ServerMetrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.engine: Engine | None = None
        self.draining = False
        self.fatal: str | None = None
        self.inflight = 0
        self.streams = 0
        self.budget = MemoryBudget(cfg.memory_budget_bytes)
        self.cache: ResultCache | None = None
        # requests past the Gate per model (reading, decoding, queued or running): bounds memory
        self.admitted = {model: 0 for model in set(ROUTE_MODEL.values())}

    @property
    def ready(self) -> bool:
        return self.engine is not None and not self.draining

    def start_drain(self) -> None:
        if not self.draining:
            self.draining = True
            self.metrics.ready.set(0)
            log.info("draining: /ready answers 503, new work is refused, %d request(s) in flight", self.inflight)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(code: str, message: str) -> JSONResponse:
    headers = {"Retry-After": RETRY_AFTER_S} if code in ("queue_full", "draining", "not_ready") else None
    return JSONResponse(error_body(code, message), status_code=ERRORS[code][0], headers=headers)


def _authorized(cfg: ServerConfig, headers: list[tuple[bytes, bytes]]) -> bool:
    """Bearer token compared as bytes in constant time (any byte a client sends is just a wrong key)."""
    if cfg.api_key is None:
        return True
    for k, v in headers:
        if k == b"authorization":
            scheme, _, token = v.partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), cfg.api_key.encode("ascii"))
    return False


OVER_BUDGET = "memory budget (--memory-budget-mb {mb:g}) is held by requests in progress; retry later"


class Gate:
    """Pure ASGI middleware around the API routes (HTTP only; the WebSocket handler does its own)."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("path") if scope["type"] == "http" else None
        if route not in ROUTE_MODEL or route == "/ws/asr":
            await self.app(scope, receive, send)
            return
        st, cfg, m = self.state, self.state.cfg, self.state.metrics
        t0 = time.monotonic()
        scope.setdefault("state", {})
        scope["state"]["deadline"] = t0 + cfg.request_timeout_s
        status = {"code": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            await send(message)

        async def refuse(code: str, message: str) -> None:
            scope["state"]["error_code"] = code
            await error_response(code, message)(scope, receive, send_wrapper)

        model = ROUTE_MODEL[route]
        admitted = False
        reservation = st.budget.reservation()
        st.inflight += 1
        m.inflight.labels(route=route).inc()
        try:
            if not _authorized(cfg, scope.get("headers", [])):
                await refuse("unauthorized", "missing or wrong API key; send Authorization: Bearer <key>")
            elif st.draining:
                await refuse("draining", "server is shutting down; retry on another instance")
            elif st.engine is None:
                await refuse("not_ready", "models are still loading; retry when /ready answers 200")
            elif st.engine.batcher(model).full or st.admitted[model] >= cfg.max_queue:
                await refuse("queue_full", f"{model} queue is full ({cfg.max_queue} items); retry later")
            elif (declared := _content_length(scope)) > cfg.max_body_bytes:
                await refuse("body_too_large", f"request body is over --max-body-mb {cfg.max_body_mb:g}")
            elif not reservation.grow_to(BODY_FACTOR * declared):
                await refuse("queue_full", OVER_BUDGET.format(mb=cfg.memory_budget_mb))
            else:
                admitted = True
                st.admitted[model] += 1
                received = 0
                scope["state"]["reservation"] = reservation

                async def limited_receive() -> Message:
                    nonlocal received
                    message = await receive()
                    if message["type"] == "http.request":
                        received += len(message.get("body", b""))
                        if received > cfg.max_body_bytes:
                            raise BodyTooLarge
                        if received > declared and not reservation.grow_to(BODY_FACTOR * received):  # chunked body
                            raise OverBudget
                    return message

                try:
                    await self.app(scope, limited_receive, send_wrapper)
                except (BodyTooLarge, OverBudget) as exc:
                    if status["started"]:
                        raise
                    if isinstance(exc, BodyTooLarge):
                        await refuse("body_too_large", f"request body is over --max-body-mb {cfg.max_body_mb:g}")
                    else:
                        await refuse("queue_full", OVER_BUDGET.format(mb=cfg.memory_budget_mb))
        finally:
            reservation.release()
            if admitted:
                st.admitted[model] -= 1
            st.inflight -= 1
            m.inflight.labels(route=route).dec()
            code = scope["state"].get("error_code")
            reason = ERRORS[code][1] if code else ""
            if reason:
                m.rejected.labels(route=route, reason=reason).inc()
            m.requests.labels(route=route, status=str(status["code"])).inc()
            m.request_duration.labels(route=route).observe(time.monotonic() - t0)


def _content_length(scope: Scope) -> int:
    for k, v in scope.get("headers", []):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return 0
    return 0


# ---------------------------------------------------------------------------------------------
# inference helpers


async def _run(engine: Engine, model: str, payloads: list[Any], lengths: list[int], deadline: float,
               wait_for_room: bool = False) -> list[Any]:
    """Submit the items and await their results. ``wait_for_room``: an admitted stream's final is
    not refused for a full queue; its segments enter in waves as the queue drains, until the deadline."""
    batcher = engine.batcher(model)
    futures: list[Any] = []
    try:
        if not wait_for_room:
            futures = batcher.submit(payloads, lengths=lengths, deadline=deadline)
        else:
            i = 0
            while i < len(payloads):
                room = max(1, batcher.max_queue - batcher.depth)
                try:
                    futures += batcher.submit(payloads[i:i + room], lengths=lengths[i:i + room], deadline=deadline)
                    i += room
                except QueueFull:
                    if time.monotonic() >= deadline:
                        raise
                    await asyncio.sleep(0.02)
    except QueueFull as exc:
        for f in futures:
            f.cancel()
        raise ApiError("queue_full", f"{exc}; retry later") from exc
    waits = [asyncio.wrap_future(f) for f in futures]
    remaining = deadline - time.monotonic()
    try:
        return await asyncio.wait_for(asyncio.gather(*waits), timeout=max(remaining, 0.001))
    except (asyncio.TimeoutError, DeadlineExceeded) as exc:
        for f in futures:
            f.cancel()
        raise ApiError("deadline_exceeded", "request took longer than --request-timeout-s; retry with shorter audio") from exc


async def transcribe(engine: Engine, x: np.ndarray, deadline: float,
                     wait_for_room: bool = False) -> tuple[str, list[dict[str, Any]]]:
    segments = au.split_segments(x, engine.max_segment_s, engine.sample_rate)
    outs = await _run(engine, "asr", segments, [s.shape[0] for s in segments], deadline, wait_for_room)
    rows, start = [], 0.0
    for seg, out in zip(segments, outs):
        dur = seg.shape[0] / engine.sample_rate
        rows.append({"start_s": round(start, 3), "end_s": round(start + dur, 3), "text": out.text})
        start += dur
    return join_texts([o.text for o in outs]), rows


async def decode_upload(cfg: ServerConfig, data: bytes | memoryview, request: Request) -> np.ndarray:
    """Decode (in a worker thread unless it is a small 16 kHz PCM WAV); the reservation grows to the decoder's real
    cost before the samples are read."""
    reservation: Reservation | None = getattr(request.state, "reservation", None)

    def admit(frames: int, channels: int, sample_rate: int) -> None:
        if reservation is not None and not reservation.grow_to(
                len(data) + decoded_cost(frames, channels, sample_rate, au.SAMPLE_RATE)):
            raise ApiError("queue_full", OVER_BUDGET.format(mb=cfg.memory_budget_mb))

    try:
        if au.cheap_to_decode(data):  # a 16 kHz PCM WAV is a copy: cheaper here than a hop to a thread and back
            return au.decode(data, cfg.max_audio_s, admit)
        return await asyncio.to_thread(au.decode, data, cfg.max_audio_s, admit)
    except au.AudioError as exc:
        raise ApiError(exc.code, str(exc)) from exc


async def read_form_file(request: Request, field: str) -> tuple[memoryview, dict[str, str]]:
    """The bytes of file field ``field`` (a view of the body) and the text fields of the form."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise ApiError("invalid_field", f"send multipart/form-data with the audio in field {field!r}, got {ctype or 'no content type'!r}")
    body = await request.body()  # bounded and reserved by the Gate (BodyTooLarge / OverBudget pass through)
    try:
        parts = multipart.parse(body, ctype, max_files=4, max_fields=32)
    except multipart.MultipartError as exc:
        raise ApiError("invalid_field", f"malformed multipart body ({str(exc)[:100]})") from exc
    upload = parts.get(field)
    if upload is None:
        raise ApiError("missing_field", f"multipart field {field!r} is missing; attach the audio file as {field!r}")
    if upload.filename is None:
        raise ApiError("invalid_field", f"field {field!r} must be a file upload, not a text value")
    texts = {name: part.content for name, part in parts.items() if isinstance(part.content, str)}
    return upload.content, texts  # type: ignore[return-value]


def parse_json(raw: bytes | str) -> Any:
    """JSON no deeper than MAX_JSON_DEPTH; any failure is ApiError invalid_json (never RecursionError)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ApiError("invalid_json", f"JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ApiError("invalid_json", f"the body is not valid JSON{where}") from None
    if _depth_over(value, MAX_JSON_DEPTH):
        raise ApiError("invalid_json", f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d > limit:
                return True
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


async def read_json(request: Request) -> Any:
    return parse_json(await request.body())


# ---------------------------------------------------------------------------------------------


def create_app(
    cfg: ServerConfig,
    metrics: ServerMetrics | None = None,
    engine_loader: Callable[[ServerConfig, ServerMetrics], Engine] | None = None,
) -> FastAPI:
    metrics = metrics or ServerMetrics()
    state = ServerState(cfg, metrics)
    if cfg.cache:
        state.cache = ResultCache(parse_cache(cfg.cache), cfg.cache_ttl_s, metrics)
        metrics.precreate_cache(state.cache.levels)
    loader = engine_loader or load_engine

    async def load() -> None:
        try:
            engine = await asyncio.to_thread(loader, cfg, metrics)
        except Exception as exc:  # noqa: BLE001 - any failure to load is fatal for this worker
            state.fatal = f"{type(exc).__name__}: {exc}"
            log.error("model loading failed: %s", state.fatal)
            return
        for model in ROUTE_MODEL.values():
            metrics.queue_capacity.labels(model=model).set(cfg.max_queue)
            metrics.model_info.labels(model=model, preset=engine.preset, provider=engine.provider).set(1)
        state.engine = engine
        if not state.draining:
            metrics.ready.set(1)
            log.info("ready: preset %s on %s", engine.preset, engine.provider)

    async def count_cpu() -> None:
        while True:
            metrics.update_cpu()
            await asyncio.sleep(1.0)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        task = asyncio.create_task(load())
        cpu_task = asyncio.create_task(count_cpu())
        yield
        cpu_task.cancel()
        state.start_drain()
        if not task.done():
            task.cancel()
        if state.engine is not None:
            await asyncio.to_thread(state.engine.stop)
        if state.cache is not None:
            await state.cache.close()
        metrics.ready.set(0)

    # redirect_slashes=False: Starlette would answer /api/predict with a 307 built from the client's
    # Host header, before the key is checked; a JSON 404 names the route instead
    app = FastAPI(title="asrtk reference server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)
    app.state.server = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        request.state.error_code = exc.code
        return error_response(exc.code, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_field")
        path = request.scope.get("path", "")
        near = next((r for r in (*ROUTE_MODEL, "/health", "/ready", "/metrics", "/openapi.json")
                     if r.rstrip("/") == path.rstrip("/")), None)
        message = {404: f"no such route; did you mean {near}?" if near else "no such route; see GET /openapi.json",
                   405: f"method not allowed; allowed: {(exc.headers or {}).get('Allow', '')}"}.get(exc.status_code, str(exc.detail))
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        route = request.scope.get("path") if request.scope.get("path") in ROUTE_MODEL else "another route"
        # the exception's message may quote request data (a file name, a JSON fragment): frames only
        log.error("internal error on %s:\n%s", route, sanitized_traceback(exc))
        return JSONResponse(error_body("internal_error", f"{type(exc).__name__} while serving the request; see the server log"),
                            status_code=500)

    def engine() -> Engine:
        assert state.engine is not None  # the Gate refuses requests before this
        return state.engine

    # -- health -------------------------------------------------------------------------------
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if state.fatal:
            return JSONResponse({"status": "failed", "reason": state.fatal}, status_code=503)
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503, headers={"Retry-After": RETRY_AFTER_S})
        if state.engine is None:
            return JSONResponse({"status": "starting"}, status_code=503, headers={"Retry-After": RETRY_AFTER_S})
        e = state.engine
        return JSONResponse({"status": "ready", "preset": e.preset, "provider": e.provider, "device": e.device})

    @app.get("/openapi.json")
    async def openapi_document() -> Response:
        """The HTTP API as OpenAPI 3 (a checked-in document: tests keep it in sync with the routes)."""
        return Response(OPENAPI_PATH.read_bytes(), media_type="application/json")

    @app.get("/metrics")
    async def metrics_route() -> Response:
        metrics.update_cpu()
        payload, ctype = await asyncio.to_thread(metrics.render)
        return Response(payload, media_type=ctype)

    # -- 1. SenseVoice-style ------------------------------------------------------------------
    def identity() -> str:
        e = engine()
        return f"{e.preset}|{e.provider}|{cfg.model}"

    async def cached_json(kind: str, x: np.ndarray, param: str,
                          compute: Callable[[], Any]) -> tuple[dict[str, Any], dict[str, str] | None]:
        """The answer for audio ``x`` from the cache, or computed and stored; plus the X-Cache header."""
        cache = state.cache
        if cache is None:
            return await compute(), None
        key = await asyncio.to_thread(make_key, kind, identity(), np.ascontiguousarray(x), param)
        hit = await cache.get(kind, key)
        if hit is not None:
            return json.loads(hit), {"X-Cache": "hit"}
        answer = await compute()
        await cache.put(key, json.dumps(answer).encode())
        return answer, {"X-Cache": "miss"}

    @app.post("/recognize")
    async def recognize(request: Request) -> JSONResponse:
        t0 = time.monotonic()
        data, form = await read_form_file(request, "file")
        x = await decode_upload(cfg, data, request)
        del data
        language = str(form.get("language") or form.get("lang") or "auto")
        answer, cache_header = await cached_json(
            "asr", x, language, lambda: _transcript(engine(), x, request.state.deadline))
        duration = x.shape[0] / engine().sample_rate
        metrics.audio_seconds.labels(route="/recognize").inc(duration)
        return JSONResponse({
            "text": answer["text"], "status": "success", "language": language, "duration_s": round(duration, 3),
            "segments": answer["segments"], "processing_s": round(time.monotonic() - t0, 4), "note": NOTE,
        }, headers=cache_header)

    # -- 2. Fun-ASR WebUI (Gradio) -----------------------------------------------------------
    @app.post("/api/predict/")
    async def gradio_predict(request: Request) -> JSONResponse:
        t0 = time.monotonic()
        body = await read_json(request)
        if not isinstance(body, dict) or "data" not in body:
            raise ApiError("missing_field", 'JSON body must be {"data": [audio, hotwords, language, itn]}')
        items = body["data"]
        if not isinstance(items, list) or not items:
            raise ApiError("invalid_field", '"data" must be a non-empty list [audio, hotwords, language, itn]')
        raw = await asyncio.to_thread(_gradio_audio_bytes, items[0], cfg)
        x = await decode_upload(cfg, raw, request)
        del raw
        language = items[2] if len(items) > 2 and isinstance(items[2], str) and items[2] else "auto"
        answer, cache_header = await cached_json(
            "asr", x, language, lambda: _transcript(engine(), x, request.state.deadline))
        metrics.audio_seconds.labels(route="/api/predict/").inc(x.shape[0] / engine().sample_rate)
        took = time.monotonic() - t0
        return JSONResponse({"data": [answer["text"]], "is_generating": False, "duration": took, "average_duration": took},
                            headers=cache_header)

    # -- 3. Emotion2Vec-style -----------------------------------------------------------------
    @app.post("/api/v1/analyze")
    async def analyze(request: Request) -> JSONResponse:
        data, form = await read_form_file(request, "audio")
        granularity = form.get("granularity", "utterance")
        if granularity not in ("utterance", "frame"):
            raise ApiError("invalid_field", f"granularity must be 'utterance' or 'frame', got {str(granularity)[:40]!r}")
        x = await decode_upload(cfg, data, request)
        del data
        e = engine()
        duration = x.shape[0] / e.sample_rate

        async def compute() -> dict[str, Any]:
            segments = au.split_segments(x, e.max_segment_s, e.sample_rate)
            outs = await _run(e, "emotion", segments, [s.shape[0] for s in segments], request.state.deadline)
            return _emotion_result(e, segments, outs, granularity, duration)

        answer, cache_header = await cached_json("emotion", x, f"granularity={granularity}", compute)
        metrics.audio_seconds.labels(route="/api/v1/analyze").inc(duration)
        return JSONResponse(answer, headers=cache_header)

    # -- 4. Sambert-HifiGan-style -------------------------------------------------------------
    @app.post("/api/synthesize")
    async def synthesize(request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError("invalid_field", 'JSON body must be an object {"text": ..., "emotion": ...}')
        e = engine()
        text = body.get("text")
        if text is None:
            raise ApiError("missing_field", 'field "text" is missing')
        if not isinstance(text, str):
            raise ApiError("invalid_field", f'field "text" must be a string, got {type(text).__name__}')
        if not text.strip():
            raise ApiError("text_empty", 'field "text" is empty; send some words to synthesise')
        # the cap counts what the model receives: it lower-cases, and U+0130 lower-cases to two characters
        n_chars = len(text.lower())
        if n_chars > e.max_tts_chars:
            raise ApiError("text_too_long", f"text has {n_chars} characters, over the limit of {e.max_tts_chars}; split it")
        emotion = body.get("emotion", "neutral")
        if not isinstance(emotion, str) or emotion not in e.emotion_classes:
            raise ApiError("unknown_emotion", f"emotion {str(emotion)[:40]!r} is not one of {', '.join(e.emotion_classes)}")
        cache, key = state.cache, ""
        if cache is not None:
            key = make_key("tts", identity(), tts_text_key(text), emotion)
            hit = await cache.get("tts", key)
            if hit is not None:
                metrics.audio_seconds.labels(route="/api/synthesize").inc(au.wav_seconds(hit))
                return Response(hit, media_type="audio/wav", headers={"X-Cache": "hit"})
        (wave,) = await _run(e, "tts", [(text, emotion)], [n_chars], request.state.deadline)
        wav = await asyncio.to_thread(au.encode_wav_pcm16, np.asarray(wave, dtype=np.float32).reshape(-1), e.sample_rate)
        metrics.audio_seconds.labels(route="/api/synthesize").inc(len(wave) / e.sample_rate)
        if cache is not None:
            await cache.put(key, wav)
            return Response(wav, media_type="audio/wav", headers={"X-Cache": "miss"})
        return Response(wav, media_type="audio/wav")

    # -- 5. streaming ASR ---------------------------------------------------------------------
    @app.websocket("/ws/asr")
    async def ws_asr(ws: WebSocket) -> None:
        await _ws_session(ws, state)

    app.add_middleware(Gate, state=state)
    return app


async def _transcript(engine: Engine, x: np.ndarray, deadline: float) -> dict[str, Any]:
    text, segments = await transcribe(engine, x, deadline)
    return {"text": text, "segments": segments}


def _gradio_audio_bytes(value: Any, cfg: ServerConfig) -> bytes:
    try:
        if isinstance(value, dict):
            inner = value.get("data") or value.get("url") or value.get("path") or value.get("name")
            if not isinstance(inner, str):
                raise au.AudioError("invalid_field", 'audio object needs "data" (data URL) or "path"')
            value = inner
        if not isinstance(value, str) or not value:
            raise au.AudioError("invalid_field", "data[0] must be a base64 data URL or a path inside --data-dir")
        if value.startswith("data:"):
            return au.decode_data_url(value)
        return au.read_file(au.resolve_data_path(value, cfg.data_dir), cfg.max_body_bytes)
    except au.AudioError as exc:
        raise ApiError(exc.code, str(exc)) from exc


def _scores(e: Engine, scores: Any) -> dict[str, float]:
    if isinstance(scores, dict):
        return {str(k): round(float(v), 6) for k, v in scores.items()}
    return {c: round(float(v), 6) for c, v in zip(e.emotion_classes, np.asarray(scores).reshape(-1))}


def _emotion_result(e: Engine, segments: list[np.ndarray], outs: list[Any], granularity: str, duration: float) -> dict[str, Any]:
    weights = np.array([s.shape[0] for s in segments], dtype=np.float64)
    per_seg = [_scores(e, o.scores) for o in outs]
    mean = {c: float(sum(w * s.get(c, 0.0) for w, s in zip(weights, per_seg)) / weights.sum()) for c in e.emotion_classes}
    label = max(mean, key=lambda c: mean[c])
    result: dict[str, Any] = {
        "label": label, "confidence": round(mean[label], 6), "scores": {c: round(v, 6) for c, v in mean.items()},
        "granularity": granularity, "duration_s": round(duration, 3), "note": NOTE.replace("text", "labels"),
    }
    if granularity == "frame":
        frames: list[dict[str, Any]] = []
        offset = 0.0
        for seg, o in zip(segments, outs):
            for fr in getattr(o, "frames", None) or []:
                sc = _scores(e, fr["scores"])
                lab = str(fr.get("label") or max(sc, key=lambda c: sc[c]))
                frames.append({"start_s": round(offset + fr["start_s"], 3), "end_s": round(offset + fr["end_s"], 3),
                               "label": lab, "confidence": sc.get(lab, 0.0), "scores": sc})
            offset += seg.shape[0] / e.sample_rate
        result["frames"] = frames
    return result


def _tail(chunks: list[np.ndarray], n: int) -> np.ndarray:
    """The last ``n`` samples of a stream held as int16 chunks, as float32 (copies only the tail)."""
    picked, have = [], 0
    for c in reversed(chunks):
        picked.append(c)
        have += c.shape[0]
        if have >= n:
            break
    tail = np.concatenate(picked[::-1])[-n:] if picked else np.zeros(0, dtype=np.int16)
    return tail.astype(np.float32) / 32768.0


def _drain_to_float(chunks: list[np.ndarray], total: int) -> np.ndarray:
    """The whole stream as float32, freeing each int16 chunk as it is copied: at most 6 bytes a sample held."""
    out = np.empty(total, dtype=np.float32)
    pos = 0
    chunks.reverse()
    while chunks:
        c = chunks.pop()
        out[pos:pos + c.shape[0]] = c
        pos += c.shape[0]
    out *= 1.0 / 32768.0
    return out


async def _ws_session(ws: WebSocket, state: ServerState) -> None:
    """Protocol: binary PCM16 16 kHz mono chunks -> partial per chunk; {"type": "end"} -> final, close 1000.

    A bad message gets an error frame and the socket keeps working; audio over --max-audio-s
    gets an error frame and close 1009. Bounded: at most --max-streams sessions (one more is
    closed 1013), the audio held counts against --memory-budget-mb (over it: error frame
    ``queue_full``, close 1013), a session silent for --stream-idle-timeout-s or longer than
    --max-stream-s gets an error frame and close 1008, and a drain closes idle sessions
    with 1001 (new ones get 1013).
    """
    cfg, m, route = state.cfg, state.metrics, "/ws/asr"
    t0 = time.monotonic()
    status = "101"
    if not _authorized(cfg, ws.scope.get("headers", [])):
        m.rejected.labels(route=route, reason="unauthorized").inc()
        m.requests.labels(route=route, status="401").inc()
        await ws.close(code=1008)
        return
    if not state.ready or state.streams >= cfg.max_streams:
        if state.draining:
            m.rejected.labels(route=route, reason="draining").inc()
        elif state.ready:
            m.rejected.labels(route=route, reason="queue_full").inc()
        m.requests.labels(route=route, status="503").inc()
        await ws.close(code=1013)
        return
    e = state.engine
    assert e is not None
    await ws.accept()
    state.inflight += 1
    state.streams += 1
    m.inflight.labels(route=route).inc()
    reservation = state.budget.reservation()
    window_n = int(PARTIAL_WINDOW_S * e.sample_rate)
    chunks: list[np.ndarray] = []  # int16: half the memory of float32
    total, seq = 0, 0
    last = time.monotonic()

    async def send_error(code: str, message: str) -> None:
        reason = ERRORS.get(code, (0, "bad_input"))[1]
        if reason:
            m.rejected.labels(route=route, reason=reason).inc()
        await ws.send_json({"type": "error", **error_body(code, message)})

    async def close_with(code: str, message: str, close_code: int) -> str:
        await send_error(code, message)
        await ws.close(code=close_code)
        return str(ERRORS[code][0])

    try:
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), timeout=WS_POLL_S)
            except asyncio.TimeoutError:
                now = time.monotonic()
                if state.draining:
                    status = await close_with("draining", "server is shutting down; reconnect to another instance", 1001)
                    break
                if now - last >= cfg.stream_idle_timeout_s:
                    status = await close_with(
                        "stream_idle", f"no message for --stream-idle-timeout-s {cfg.stream_idle_timeout_s:g}; "
                                       'send audio chunks, then {"type": "end"}', 1008)
                    break
                if now - t0 >= cfg.max_stream_s:
                    status = await close_with("stream_too_long", f"session is over --max-stream-s {cfg.max_stream_s:g}", 1008)
                    break
                continue
            last = time.monotonic()
            if last - t0 >= cfg.max_stream_s:
                status = await close_with("stream_too_long", f"session is over --max-stream-s {cfg.max_stream_s:g}", 1008)
                break
            if msg["type"] == "websocket.disconnect":
                status = "499"  # client went away before "end"
                break
            if msg.get("bytes") is not None:
                data = msg["bytes"]
                try:
                    au.decode_pcm16(data, cfg.max_audio_s)  # validates: whole samples, not empty, finite
                except au.AudioError as exc:
                    if exc.code == "audio_too_long":  # one chunk over the limit: the stream is, too
                        status = await close_with(exc.code, f"stream is over --max-audio-s {cfg.max_audio_s:g}", 1009)
                        break
                    await send_error(exc.code, str(exc))
                    continue
                n = len(data) // 2
                if (total + n) / e.sample_rate > cfg.max_audio_s:
                    status = await close_with("audio_too_long", f"stream is over --max-audio-s {cfg.max_audio_s:g}", 1009)
                    break
                if not reservation.grow_to(2 * (total + n) + 4 * window_n):
                    status = await close_with("queue_full", OVER_BUDGET.format(mb=cfg.memory_budget_mb), 1013)
                    break
                chunks.append(np.frombuffer(data, dtype="<i2").copy())
                total += n
                seq += 1
                window = _tail(chunks, window_n)
                try:
                    (out,) = await _run(e, "asr", [window], [window.shape[0]], time.monotonic() + cfg.request_timeout_s)
                except ApiError as exc:
                    await send_error(exc.code, str(exc))
                    continue
                await ws.send_json({"type": "partial", "text": out.text, "seq": seq, "audio_s": round(total / e.sample_rate, 3)})
                continue
            try:
                obj = parse_json(msg.get("text") or "")
            except ApiError as exc:
                await send_error(exc.code, f'{exc}; text frames must be JSON, e.g. {{"type": "end"}}')
                continue
            if not isinstance(obj, dict) or obj.get("type") != "end":
                await send_error("invalid_field", 'unknown message; send binary PCM16 chunks, then {"type": "end"}')
                continue
            if not reservation.grow_to(2 * total + 4 * total + 4 * window_n):
                status = await close_with("queue_full", OVER_BUDGET.format(mb=cfg.memory_budget_mb), 1013)
                break
            full = _drain_to_float(chunks, total)
            text, segments = ("", [])
            if full.size:
                try:
                    text, segments = await transcribe(e, full, time.monotonic() + cfg.request_timeout_s,
                                                      wait_for_room=True)
                except ApiError as exc:
                    status = await close_with(exc.code, str(exc), 1013)
                    break
            m.audio_seconds.labels(route=route).inc(total / e.sample_rate)
            await ws.send_json({"type": "final", "text": text, "seq": seq + 1, "audio_s": round(total / e.sample_rate, 3),
                                "segments": segments, "note": NOTE})
            await ws.close(code=1000)
            break
    except WebSocketDisconnect:
        status = "499"
    finally:
        reservation.release()
        state.inflight -= 1
        state.streams -= 1
        m.inflight.labels(route=route).dec()
        m.requests.labels(route=route, status=status).inc()
        m.request_duration.labels(route=route).observe(time.monotonic() - t0)
