"""reference_server/openapi.json against the app: same routes, same error codes, valid OpenAPI.

The document is written by hand and checked in (the server serves it at GET /openapi.json);
these tests fail on any drift between it and what ``create_app`` registers and ``ERRORS``
lists, naming what to add or remove. tests/fuzz/test_fuzz_http.py then fuzzes a real server
against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_engine import InProcessServer, serve
from fastapi.routing import APIRoute, APIWebSocketRoute
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from reference_server.app import ERRORS, OPENAPI_PATH, ROUTE_MODEL, create_app
from reference_server.config import ServerConfig

OPEN_ROUTES = {"/health", "/ready", "/metrics", "/openapi.json"}  # stay open with --api-key (docs/server.md)
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(OPENAPI_PATH.read_text())


@pytest.fixture
def server() -> Iterator[InProcessServer]:
    with serve(ServerConfig()) as srv:
        yield srv


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method.upper(), path, op


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """A ``$ref`` to components/responses -> (its name, the response); an inline response -> (None, it)."""
    ref = node.get("$ref")
    if ref is None:
        return None, node
    prefix = "#/components/responses/"
    assert ref.startswith(prefix), f"response $ref {ref} does not point into components/responses"
    name = ref[len(prefix):]
    return name, doc["components"]["responses"][name]


def _enum_next_to(schema: dict[str, Any], base: dict[str, Any]) -> set[str] | None:
    """``allOf [base, {...code: {enum}}]`` -> the enum; None if ``schema`` is not built that way."""
    parts = schema.get("allOf", [])
    if base not in parts:
        return None
    enums = [p["properties"]["error"]["properties"]["code"]["enum"] for p in parts if p is not base and "properties" in p]
    assert len(enums) == 1, f"exactly one code enum goes next to {base}: {schema}"
    return set(enums[0])


def _error_codes(response: dict[str, Any]) -> set[str] | None:
    """The codes an error response documents (allOf [Error, code enum]); None if it is not one."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return _enum_next_to(schema, {"$ref": "#/components/schemas/Error"})


def test_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validate(doc)  # raises OpenAPIValidationError naming the offending node
    assert doc["openapi"].startswith("3.")


def test_operations_are_the_routes_the_app_registers(doc: dict[str, Any]) -> None:
    app = create_app(ServerConfig())  # routes only: the engine loads in the lifespan, which does not run here
    http = {(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in r.methods}
    documented = {(m, p) for m, p, _ in _operations(doc)}
    assert documented - http == set(), "openapi.json documents operations the app does not register"
    assert http - documented == set(), "the app registers routes that openapi.json does not document"
    # OpenAPI 3 cannot describe a WebSocket; the document says where the protocol is described instead
    ws = {r.path for r in app.routes if isinstance(r, APIWebSocketRoute)}
    assert ws == {"/ws/asr"}
    assert all(path in doc["info"]["description"] for path in ws)


def test_documented_error_codes_are_the_servers(doc: dict[str, Any]) -> None:
    enum = set(doc["components"]["schemas"]["ErrorCode"]["enum"])
    assert enum - set(ERRORS) == set(), "openapi.json documents error codes that app.ERRORS does not have"
    assert set(ERRORS) - enum == set(), "app.ERRORS has error codes that openapi.json does not document"
    http: set[str] = set()
    for name, response in doc["components"]["responses"].items():
        codes = _error_codes(response)
        assert codes is not None, f"components/responses/{name} is not an Error response"
        status = response["x-status"]
        wrong = {c for c in codes if ERRORS[c][0] != status}
        assert not wrong, f"components/responses/{name} is for HTTP {status} but lists {sorted(wrong)}, sent with another status"
        http |= codes
    ws_error = doc["components"]["schemas"]["WsError"]
    ws = _enum_next_to(ws_error, ws_error["allOf"][0])
    assert ws is not None and ws <= set(ERRORS)
    assert set(ERRORS) - http - ws == set(), "codes of app.ERRORS that no HTTP response and no WebSocket error frame documents"


def test_each_operation_documents_its_errors_under_their_status(doc: dict[str, Any]) -> None:
    for method, path, op in _operations(doc):
        for status, node in op["responses"].items():
            name, response = _resolve(doc, node)
            if status.startswith("2") or (path, status) == ("/ready", "503"):
                continue  # success bodies, and /ready's {"status": "starting" | "draining" | "failed"}
            assert name is not None, f"{method} {path} {status}: error responses are shared, $ref one in components/responses"
            assert response["x-status"] == int(status), f"{method} {path}: {status} refers to {name} (HTTP {response['x-status']})"


def test_the_apis_need_the_key_and_the_probes_do_not(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    apis = set(ROUTE_MODEL) - {"/ws/asr"}
    for method, path, op in _operations(doc):
        security = op.get("security", doc.get("security"))
        codes = set(op["responses"])
        if path in OPEN_ROUTES:
            assert security == [], f"{method} {path} is open with --api-key; document security: []"
            assert "401" not in codes
        else:
            assert path in apis
            assert security == [{"bearerAuth": []}], f"{method} {path} needs the bearer key"
            assert "401" in codes


def test_the_server_serves_the_document(client: TestClient, doc: dict[str, Any]) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == doc
