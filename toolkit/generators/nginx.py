"""nginx load balancer configuration for a fleet of inference servers (nginx 1.22, open source).

The user gets an **includable http-context file** (``asrtk.conf``): ``map``, ``limit_req_zone``,
``upstream`` and one ``server``. Debian's ``/etc/nginx/nginx.conf`` includes
``/etc/nginx/conf.d/*.conf`` inside ``http {}``, so copying it there is the whole install.
:func:`standalone_wrapper` returns a minimal ``nginx.conf`` (own pid, error log and temp
paths under a prefix) that includes it: that is what ``nginx -t -p DIR -c nginx.conf``
runs in the tests, and what ``asrtk generate nginx --standalone`` writes for a quick trial.

Every number carries a comment saying where it came from. Facts designed around:
passive health checks only (``max_fails`` / ``fail_timeout``), no ``queue``, no ``least_time``;
``least_conn`` must precede ``keepalive``; ``proxy_read_timeout`` bounds one read, and a
non-streaming recognition sends nothing until its transcript is ready, so one read spans
the whole server-side processing time; nginx does not re-send a POST that reached a server
unless told (``non_idempotent``), which the speech APIs allow (they have no side effects:
``asrtk drill`` measured the 502/504s of a killed or frozen replica vanish with it), and a
request reaches a ``backup`` only if ``proxy_next_upstream_tries`` lets it try past every
primary.
"""

from __future__ import annotations

import math

from toolkit.generators.spec import PLACEHOLDER_DOMAIN, OpsSpec

UPSTREAM = "asrtk_backend"
LIMIT_ZONE = "asrtk_limit"
RATE_LIMITED = "@asrtk_rate_limited"
RETRY_AFTER_S = 1  # what the reference server sends with its own 503s
CONNECT_TIMEOUT_S = 2
DEFAULT_READ_TIMEOUT_S = 60
STREAM_READ_TIMEOUT_S = 60
BODY_MARGIN_BYTES = 64 * 1024  # multipart boundaries and form fields around the audio
MiB = 2**20


def read_timeout(spec: OpsSpec) -> tuple[int, str]:
    """proxy_read_timeout in seconds and where it came from (the measured tail, never a guess)."""
    if spec.read_timeout_s is not None:
        return spec.read_timeout_s, f"{spec.source('read_timeout_s')}, in place of the value derived from the latency tail"
    if spec.latency_max_s is not None:
        value = max(5, math.ceil(2 * spec.latency_max_s))
        return value, f"2 x slowest measured response ({spec.source('latency_max_s')}), at least 5 s"
    if spec.latency_p99_s is not None:
        value = max(5, math.ceil(4 * spec.latency_p99_s))
        return value, f"4 x measured p99 ({spec.source('latency_p99_s')}; no max in the plan), at least 5 s"
    if spec.latency_p95_s is not None:
        value = max(5, math.ceil(6 * spec.latency_p95_s))
        return value, (f"6 x measured p95 ({spec.source('latency_p95_s')}): the slowest request predicted from p95 "
                       "alone (no p99 or max measured), at least 5 s; set --read-timeout if longer requests exist")
    return DEFAULT_READ_TIMEOUT_S, (
        "nginx default 60 s: the plan has no measured latency tail (latency_s); run asrtk sweep and asrtk plan"
    )


def keepalive_connections(spec: OpsSpec) -> tuple[int, str]:
    if spec.latency_p50_s is not None:
        busy = math.ceil(spec.target_qps * spec.latency_p50_s)
        why = (f"Little's law: {spec.target_qps:g} r/s x {spec.latency_p50_s:g} s (measured p50) "
               f"= {busy} requests in flight at the target")
    else:
        busy = math.ceil(spec.target_qps * spec.slo_latency_s / 2)
        why = (f"Little's law estimate: {spec.target_qps:g} r/s x {spec.slo_latency_s / 2:g} s "
               f"(half the SLO; the plan has no measured p50) = {busy} in flight")
    return max(8, busy), why + ", at least 8"


def body_limit(spec: OpsSpec) -> tuple[str, str]:
    mib = math.ceil((spec.max_body_bytes + BODY_MARGIN_BYTES) / MiB)
    return f"{mib}m", f"{spec.source('max_body_bytes')} + 64 KiB multipart overhead, rounded up to MiB"


def rate_limit(spec: OpsSpec) -> tuple[str, int, str]:
    cap = spec.planned_capacity_rps
    burst = max(1, math.ceil(spec.target_qps))
    if spec.rate_limit is not None:
        rate = spec.rate_limit
        why = f"rate = {rate} ({spec.source('rate_limit')}, in place of the planned fleet capacity {cap:g} r/s)"
    else:
        rate = f"{math.ceil(cap)}r/s" if cap >= 10 else f"{math.ceil(cap * 60)}r/m"
        why = f"rate = planned fleet capacity {cap:g} r/s ({spec.source('planned_capacity_rps')})"
    return rate, burst, why + f"; burst = 1 s of target traffic ({spec.target_qps:g} r/s): Poisson arrivals bunch"


def render(spec: OpsSpec) -> str:
    """The includable http-context file (``conf.d/asrtk.conf``)."""
    rt, rt_why = read_timeout(spec)
    ka, ka_why = keepalive_connections(spec)
    body, body_why = body_limit(spec)
    rate, burst, rate_why = rate_limit(spec)
    retry = "error timeout non_idempotent" if spec.retry_non_idempotent else "error timeout"
    tries = max(2, len(spec.upstreams))
    retry_timeout = rt + 2 * CONNECT_TIMEOUT_S
    out: list[str] = []
    w = out.append
    w(f"# asrtk load balancer, generated by `asrtk generate nginx` from {spec.origin}. Do not edit by hand:")
    w("# change the plan (or flags) and regenerate.")
    w("# Target: nginx 1.22 open source (Debian bookworm): passive health checks only.")
    w("# Install: copy to /etc/nginx/conf.d/asrtk.conf (included inside http {}), then")
    w("#   nginx -t && systemctl reload nginx")
    w("# Upstream host names must resolve when nginx starts: open-source nginx resolves them once.")
    if spec.addresses == "template":
        w(f"# TEMPLATE (--template): the server addresses are placeholders (*.{PLACEHOLDER_DOMAIN}); nginx -t")
        w("# fails on them until they are replaced. Regenerate with --hosts FILE (one HOST:PORT per line).")
    w("")
    if spec.streaming:
        w("# WebSocket upgrade for streaming ASR; an empty Connection header otherwise, so plain requests")
        w("# keep using the upstream keepalive pool.")
        w("map $http_upgrade $asrtk_connection_upgrade {")
        w("    default upgrade;")
        w("    ''      '';")
        w("}")
        w("")
    w(f"# Admission control: {rate_why}.")
    w("# One shared bucket (key $server_name): the limit protects the fleet, not fairness between clients.")
    w("# Excess requests get 429 at once instead of queueing on the GPUs past the SLO.")
    w(f"limit_req_zone $server_name zone={LIMIT_ZONE}:1m rate={rate};")
    w("")
    w(f"upstream {UPSTREAM} {{")
    w("    # least_conn: request cost varies with clip length, so count in-flight work, not turns.")
    w("    # It must come before keepalive (nginx -t warns otherwise).")
    w("    least_conn;")
    w("    # Shared memory: passive health state and connection counts are common to all workers.")
    w(f"    zone {UPSTREAM} 64k;")
    w(f"    # Passive health check: {spec.max_fails} failed attempts (connect error or timeout) within "
      f"{spec.fail_timeout_s}s eject a server for {spec.fail_timeout_s}s.")
    for u in spec.upstreams:
        params = f"weight={u.weight} max_fails={spec.max_fails} fail_timeout={spec.fail_timeout_s}s"
        if u.backup:
            params += " backup"
        parts = [u.name if u.name and u.name != u.address else "", f"({u.node_type})" if u.node_type else ""]
        note = " ".join(x for x in parts if x)
        if u.source:
            note = (note + ", " if note else "") + f"from {u.source}"
        weight_from = "" if "weight from there" in u.source else ", weight from the plan"
        kind = ("spare (redundancy), used only when every active server is down" if u.backup
                else "active" + weight_from)
        if spec.addresses == "template":
            kind += "; PLACEHOLDER address"
        w(f"    server {u.address} {params};  # {(note + ': ') if note else ''}{kind}")
    w(f"    # Idle upstream connections kept per worker: {ka_why}.")
    w(f"    keepalive {ka};")
    w("    keepalive_timeout 60s;")
    w("}")
    w("")
    w("server {")
    w(f"    listen {spec.listen};")
    w(f"    server_name {spec.server_name};")
    w("    server_tokens off;")
    w("")
    w(f"    # Largest upload: {body_why}.")
    w(f"    client_max_body_size {body};")
    w("    # Bodies are buffered here before a server is chosen (proxy_request_buffering on): slow")
    w("    # uploads never hold a GPU worker. Bodies above 1m go to client_body_temp on disk.")
    w("    client_body_buffer_size 1m;")
    w("")
    w("    # Retry policy: an attempt that failed to connect or timed out is retried on another server.")
    if spec.retry_non_idempotent:
        w("    # So is a POST that already reached one (non_idempotent): the speech APIs have no side")
        w("    # effects, so a request cut off by a dying or frozen server costs compute twice, not a")
        w("    # client error. A backend with side effects: regenerate with --no-retry-non-idempotent.")
    else:
        w("    # A POST that already reached a server is never retried (--no-retry-non-idempotent): it")
        w("    # may have been processed, and the client of a dying or frozen server gets 502/504.")
    w(f"    proxy_next_upstream {retry};")
    w(f"    # Every server may be tried ({len(spec.upstreams)} in the upstream, at least 2): with fewer tries than")
    w("    # dead primaries a request fails before it reaches a backup. Retries stop after one read")
    w(f"    # timeout plus two connect timeouts ({rt}s + 2 x {CONNECT_TIMEOUT_S}s), so a client is never held longer.")
    w(f"    proxy_next_upstream_tries {tries};")
    w(f"    proxy_next_upstream_timeout {retry_timeout}s;")
    w(f"    # Connecting on the same network takes milliseconds; {CONNECT_TIMEOUT_S}s fails over fast on a dead host.")
    w(f"    proxy_connect_timeout {CONNECT_TIMEOUT_S}s;")
    w("    # Per write to the server; the request body is already buffered, so writes are quick.")
    w("    proxy_send_timeout 30s;")
    w(f"    # Per read: a recognition sends nothing until the transcript is ready, so one read spans the")
    w(f"    # whole processing time. {rt_why}.")
    w(f"    proxy_read_timeout {rt}s;")
    w("")
    w(f"    # Refused by limit_req: 429 with Retry-After ({RETRY_AFTER_S} s, like the servers' own 503s) and the")
    w("    # servers' JSON error shape, so a client backs off instead of retrying at once.")
    w(f"    error_page 429 = {RATE_LIMITED};")
    w(f"    location {RATE_LIMITED} {{")
    w("        default_type application/json;")
    w(f"        add_header Retry-After {RETRY_AFTER_S} always;")
    w('        return 429 \'{"error": {"code": "rate_limited", "message": "over the planned capacity; retry later"}}\';')
    w("    }")
    w("")
    w("    # nginx's own liveness, for the layer in front of it.")
    w("    location = /healthz {")
    w("        access_log off;")
    w("        default_type text/plain;")
    w('        return 200 "ok\\n";')
    w("    }")
    w("")
    w("    # Connection counters for nginx-prometheus-exporter; local networks only.")
    w("    location = /nginx_status {")
    w("        stub_status;")
    w("        access_log off;")
    for a in spec.status_allow:
        w(f"        allow {a};")
    w("        deny all;")
    w("    }")
    w("")
    w("    # Prometheus scrapes every server directly; through the balancer it would see one random server.")
    w("    location = /metrics {")
    w("        return 404;")
    w("    }")
    w("")
    if spec.streaming:
        w("    # Streaming ASR over WebSocket (/ws/asr). Per read: the longest silence between two server")
        w(f"    # messages; partials answer every chunk, so {STREAM_READ_TIMEOUT_S}s only ends dead sessions.")
        w("    location /ws/ {")
        w(f"        limit_req zone={LIMIT_ZONE} burst={burst} nodelay;")
        w("        limit_req_status 429;")
        w(f"        proxy_pass http://{UPSTREAM};")
        _proxy_headers(w, "$asrtk_connection_upgrade")
        w("        proxy_set_header Upgrade $http_upgrade;")
        w("        proxy_buffering off;")
        w(f"        proxy_read_timeout {max(STREAM_READ_TIMEOUT_S, rt)}s;")
        w(f"        proxy_send_timeout {max(STREAM_READ_TIMEOUT_S, rt)}s;")
        w("    }")
        w("")
    else:
        w("    # No WebSocket location: the plan's scenario does not stream (request.streaming false).")
        w("")
    w("    location / {")
    w(f"        limit_req zone={LIMIT_ZONE} burst={burst} nodelay;")
    w("        limit_req_status 429;")
    w(f"        proxy_pass http://{UPSTREAM};")
    _proxy_headers(w, '""')
    w("    }")
    w("}")
    return "\n".join(out) + "\n"


def _proxy_headers(w, connection: str) -> None:
    # proxy_set_header is not inherited once a location sets any: every location gets the full set.
    w("        proxy_http_version 1.1;  # upstream keepalive needs HTTP/1.1")
    w(f"        proxy_set_header Connection {connection};")
    w("        proxy_set_header Host $host;")
    w("        proxy_set_header X-Real-IP $remote_addr;")
    w("        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
    w("        proxy_set_header X-Forwarded-Proto $scheme;")
    w("        proxy_set_header X-Request-ID $request_id;")


def standalone_wrapper(include_path: str, prefix: str = "", run_as: str | None = None,
                       access_log_format: tuple[str, str] | None = None) -> str:
    """A minimal ``nginx.conf`` that includes the generated file, with every path under ``prefix``
    (empty: relative names, resolved by nginx against ``-p PREFIX``).

    ``run_as`` writes a ``user`` directive (only meaningful when the master runs as root;
    nginx warns about it otherwise). ``access_log_format`` is ``(name, format)``: a ``log_format``
    the access log is written in (``asrtk drill`` records every upstream nginx tried).
    """
    p = prefix.rstrip("/")

    def at(name: str) -> str:
        return f"{p}/{name}" if p else name  # relative names resolve against nginx -p PREFIX

    lines = [
        "# Standalone wrapper for trying the generated asrtk.conf: nginx -p DIR -c nginx.conf",
        "# (production: copy asrtk.conf to /etc/nginx/conf.d/ instead).",
    ]
    if run_as:
        lines.append(f"user {run_as};")
    lines += [
        "worker_processes 1;",
        f"pid {at('nginx.pid')};",
        f"error_log {at('error.log')} warn;",
        "events {",
        "    worker_connections 1024;",
        "}",
        "http {",
    ]
    if access_log_format is not None:
        name, fmt = access_log_format
        lines += [f"    log_format {name} '{fmt}';", f"    access_log {at('access.log')} {name};"]
    else:
        lines.append(f"    access_log {at('access.log')};")
    lines += [
        f"    client_body_temp_path {at('client_body_temp')};",
        f"    proxy_temp_path {at('proxy_temp')};",
        f"    fastcgi_temp_path {at('fastcgi_temp')};",
        f"    uwsgi_temp_path {at('uwsgi_temp')};",
        f"    scgi_temp_path {at('scgi_temp')};",
        f"    include {include_path};",
        "}",
    ]
    return "\n".join(lines) + "\n"
