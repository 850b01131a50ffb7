"""nginx generator: structure and derivation of every number (nginx -t runs in tests/integration)."""

from __future__ import annotations

import re

from toolkit.generators import nginx
from toolkit.generators import spec as S

PLAN = {
    "target": {"qps": 300.0, "route": "/recognize"},
    "node_types": [{"name": "gpu-a", "capacity_rps": 55.0}, {"name": "gpu-b", "capacity_rps": 30.0}],
    "fleet": [
        {"name": "gpu-a-1", "node_type": "gpu-a", "address": "gpu-a-1:8000", "weight": 55},
        {"name": "gpu-b-1", "node_type": "gpu-b", "address": "gpu-b-1:8000", "weight": 30},
        {"name": "gpu-a-2", "node_type": "gpu-a", "address": "gpu-a-2:8000", "weight": 55, "backup": True},
    ],
    "latency_s": {"p50": 0.4, "p99": 1.6, "max": 2.5},
    "request": {"max_body_bytes": 19200044, "streaming": False},
}


def _block(conf: str, head: str) -> str:
    start = conf.index(head)
    depth, i = 0, conf.index("{", start)
    for j in range(i, len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[j], 0)
        if depth == 0:
            return conf[start:j + 1]
    raise AssertionError(f"unbalanced block {head}")


def _directives(block: str) -> list[str]:
    return [ln.split("#")[0].strip() for ln in block.splitlines() if ln.split("#")[0].strip()]


def test_upstream_least_conn_first_weights_backups_keepalive_last() -> None:
    conf = nginx.render(S.from_plan(PLAN))
    ds = _directives(_block(conf, "upstream asrtk_backend"))
    assert ds[1] == "least_conn;"
    assert ds.index("least_conn;") < next(i for i, d in enumerate(ds) if d.startswith("keepalive "))
    servers = [d for d in ds if d.startswith("server ")]
    assert servers == [
        "server gpu-a-1:8000 weight=55 max_fails=3 fail_timeout=10s;",
        "server gpu-b-1:8000 weight=30 max_fails=3 fail_timeout=10s;",
        "server gpu-a-2:8000 weight=55 max_fails=3 fail_timeout=10s backup;",
    ]
    # Little's law from the measured p50: 300 r/s x 0.4 s = 120
    assert "keepalive 120;" in ds
    assert "300 r/s x 0.4 s (measured p50) = 120" in conf


def test_timeouts_come_from_the_measured_tail() -> None:
    s = S.from_plan(PLAN)
    conf = nginx.render(s)
    assert "proxy_read_timeout 5s;" in conf  # 2 x max 2.5 s
    assert "latency_s.max = 2.5 s" in conf
    no_max = S.from_plan({**PLAN, "latency_s": {"p99": 3.2}})
    assert "proxy_read_timeout 13s;" in nginx.render(no_max)  # 4 x p99, rounded up
    p95_only = S.from_plan({**PLAN, "latency_s": {"p95": 1.2, "p99": None, "max": None}})
    assert "proxy_read_timeout 8s;" in nginx.render(p95_only)  # 6 x p95 = 7.2 -> 8
    none = S.from_plan({**PLAN, "latency_s": {}})
    text = nginx.render(none)
    assert "proxy_read_timeout 60s;" in text and "no measured latency tail" in text


def test_body_size_rate_limit_and_comments() -> None:
    conf = nginx.render(S.from_plan(PLAN))
    # 19200044 B + 64 KiB = 18.37 MiB -> 19m
    assert "client_max_body_size 19m;" in conf
    assert "request.max_body_bytes = 19200044" in conf
    # capacity of the active fleet: 55 + 30 r/s; burst 1 s of the 300 r/s target
    assert "limit_req_zone $server_name zone=asrtk_limit:1m rate=85r/s;" in conf
    assert "limit_req zone=asrtk_limit burst=300 nodelay;" in conf
    assert "limit_req_status 429;" in conf
    small = S.from_flags(["a:1"], target_qps=2, capacity_rps=2.5)
    assert "rate=150r/m;" in nginx.render(small)


def test_retry_policy_reaches_the_backup_and_is_bounded() -> None:
    """asrtk drill: a killed or frozen replica's POSTs are re-sent (the speech APIs have no side
    effects), every server may be tried (with 2 tries and 2 dead primaries a request never reached
    the backup: 3 client errors), and retrying stops after one read plus two connect timeouts."""
    s = S.from_plan(PLAN)
    conf = nginx.render(s)
    assert "proxy_next_upstream error timeout non_idempotent;" in conf
    assert "proxy_next_upstream_tries 3;" in conf  # 2 active + 1 backup
    assert "proxy_next_upstream_timeout 9s;" in conf  # proxy_read_timeout 5s + 2 x proxy_connect_timeout 2s
    opted_out = nginx.render(s.with_overrides(retry_non_idempotent=False))
    assert "proxy_next_upstream error timeout;" in opted_out and "non_idempotent;" not in opted_out
    one = nginx.render(S.from_flags(["a:1"], target_qps=2))
    assert "proxy_next_upstream_tries 2;" in one


def test_rate_limited_requests_get_retry_after_and_the_error_shape() -> None:
    conf = nginx.render(S.from_plan(PLAN))
    assert "error_page 429 = @asrtk_rate_limited;" in _directives(_block(conf, "server {"))
    named = _directives(_block(conf, "location @asrtk_rate_limited"))
    assert "add_header Retry-After 1 always;" in named
    assert any(d.startswith("return 429 '{\"error\": {\"code\": \"rate_limited\"") for d in named), named


def test_streaming_gets_a_websocket_location_with_the_upgrade_map() -> None:
    plain = nginx.render(S.from_plan(PLAN))
    assert "location /ws/" not in plain and "$http_upgrade" not in plain
    conf = nginx.render(S.from_plan({**PLAN, "request": {"streaming": True}}))
    assert re.search(r"map \$http_upgrade \$asrtk_connection_upgrade \{\s*default upgrade;\s*''\s*'';\s*\}", conf)
    ws = _directives(_block(conf, "location /ws/"))
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $asrtk_connection_upgrade;" in ws
    assert "proxy_http_version 1.1;" in ws
    # proxy_set_header is not inherited into a location that sets any: the full set is repeated
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in ws


def test_server_hygiene_health_and_status() -> None:
    conf = nginx.render(S.from_plan(PLAN))
    server = _directives(_block(conf, "server {"))
    assert "server_tokens off;" in server
    health = _directives(_block(conf, "location = /healthz"))
    assert 'return 200 "ok\\n";' in health
    status = _directives(_block(conf, "location = /nginx_status"))
    assert status[1] == "stub_status;"
    assert status[-4:-1] == ["allow 127.0.0.1;", "allow ::1;", "deny all;"]
    root = _directives(_block(conf, "location / {"))
    assert 'proxy_set_header Connection "";' in root and "proxy_pass http://asrtk_backend;" in root


def test_every_number_has_a_comment_saying_where_it_came_from() -> None:
    conf = nginx.render(S.from_plan(PLAN))
    lines = conf.splitlines()
    for key in ("client_max_body_size", "proxy_read_timeout", "keepalive ", "limit_req_zone", "proxy_connect_timeout"):
        i = next(i for i, ln in enumerate(lines) if ln.strip().startswith(key))
        assert lines[i - 1].strip().startswith("#"), f"{key} has no comment above it"


def test_standalone_wrapper_keeps_every_path_under_the_prefix() -> None:
    text = nginx.standalone_wrapper("/x/asrtk.conf", "/tmp/p/")
    for d in ("pid", "error_log", "access_log", "client_body_temp_path", "proxy_temp_path"):
        assert re.search(rf"^\s*{d} /tmp/p/", text, re.M), d
    assert "user " not in text
    assert "user root;" in nginx.standalone_wrapper("a.conf", "/p", run_as="root")
    assert "pid nginx.pid;" in nginx.standalone_wrapper("asrtk.conf")
