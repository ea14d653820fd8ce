"""The API key, on and off, on every route the app has: admin routes always need it, inference and
model routes when MMOE_INFERENCE_NEEDS_KEY is true, health, docs and /ui never. A refusal is a
401 in the one error shape with WWW-Authenticate; the key is never logged. CORS is off unless
origins are configured."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.routing import BaseRoute, Mount

from service.app import create_app, load_repository
from service.auth import ADMIN_DISABLED, MISSING_KEY, WRONG_KEY
from service.settings import Settings
from tests.service.conftest import REQUEST_ID, settings_for

KEY = "test-key-0123456789abcdef"
ROW = [0.5] * 100
# The routes anyone may call; every other route is protected (admin routes always).
OPEN = {"/health/live", "/health/ready", "/docs", "/docs/oauth2-redirect", "/redoc",
        "/openapi.json", "/ui", "/docs-assets", "/ui/assets",
        "/v2/health/live", "/v2/health/ready"}  # fmt: skip
ADMIN = {"/admin/reload"}
CONCRETE = {"{name}": "mmoe-synthetic", "{version}": "1"}
MOUNTED_FILE = {"/docs-assets": "/redoc.standalone.js", "/ui/assets": "/app.js"}
V2_BODY = {"inputs": [{"name": "features", "shape": [1, 100], "datatype": "FP32", "data": ROW}]}
BODIES = {
    "/predict": {"instances": [ROW]},
    "/v2/models/mmoe-synthetic/infer": V2_BODY,
    "/v2/models/mmoe-synthetic/versions/1/infer": V2_BODY,
}


def every_route(app: FastAPI) -> Iterator[tuple[str, str, str]]:
    """(template, method, concrete path) for every route of the app, included routers too."""

    def flat(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
        for route in routes:
            included = getattr(route, "original_router", None)
            yield from flat(included.routes) if included is not None else [route]

    for route in flat(app.router.routes):
        template = getattr(route, "path", "")
        if isinstance(route, Mount):
            yield template, "GET", template + MOUNTED_FILE[template]
            continue
        concrete = template
        for parameter, value in CONCRETE.items():
            concrete = concrete.replace(parameter, value)
        for method in sorted(getattr(route, "methods", set()) - {"HEAD"}):
            yield template, method, concrete


def client_for(root: Path, **settings: object) -> TestClient:
    configured = settings_for(root, **settings)
    app = create_app(configured, load_repository(configured))
    return TestClient(app, headers={"X-Request-ID": REQUEST_ID})


def call(client: TestClient, method: str, path: str, **headers: str) -> int:
    template_body = BODIES.get(path)
    response = client.request(method, path, json=template_body, headers=headers)
    return response.status_code


def error(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": None, "request_id": REQUEST_ID}}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support import copy_bundled

    return copy_bundled(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("inference_needs_key", [False, True])
def test_every_route_asks_for_the_key_exactly_where_it_should(
    repository: Path, inference_needs_key: bool
) -> None:
    with client_for(repository, api_key=KEY, inference_needs_key=inference_needs_key) as client:
        routes = list(every_route(client.app))  # type: ignore[arg-type]
        assert {template for template, _, _ in routes} >= OPEN | ADMIN | {"/predict", "/metrics"}
        for template, method, path in routes:
            without_key = call(client, method, path)
            with_key = call(client, method, path, Authorization=f"Bearer {KEY}")
            also_with_key = call(client, method, path, **{"X-API-Key": KEY})
            wrong_key = call(client, method, path, Authorization="Bearer not-the-key-at-all")
            needs_key = template in ADMIN or (inference_needs_key and template not in OPEN)
            where = f"{method} {path}"
            if needs_key:
                assert (without_key, wrong_key) == (401, 401), where
            else:
                assert 401 not in (without_key, wrong_key), where
                assert without_key == with_key, where
            assert with_key == also_with_key, where
            assert with_key not in (401, 403, 404, 405, 422, 500), where


def test_without_a_key_admin_routes_are_off_and_everything_else_is_open(repository: Path) -> None:
    with client_for(repository) as client:
        for template, method, path in every_route(client.app):  # type: ignore[arg-type]
            status = call(client, method, path, Authorization=f"Bearer {KEY}")
            assert status == (403 if template in ADMIN else 200), f"{method} {path}"
        refused = client.post("/admin/reload")
        assert refused.json() == error("admin_disabled", ADMIN_DISABLED)
        assert "www-authenticate" not in refused.headers


def test_a_refusal_is_a_401_in_the_error_shape_with_www_authenticate(repository: Path) -> None:
    with client_for(repository, api_key=KEY, inference_needs_key=True) as client:
        missing = client.post("/predict", json={"instances": [ROW]})
        assert (missing.status_code, missing.json()) == (401, error("unauthorized", MISSING_KEY))
        assert missing.headers["www-authenticate"] == 'Bearer realm="mmoe-service"'
        assert missing.headers["x-request-id"] == REQUEST_ID
        wrong = client.get("/models", headers={"X-API-Key": KEY.upper()})
        assert (wrong.status_code, wrong.json()) == (401, error("unauthorized", WRONG_KEY))
        assert wrong.headers["www-authenticate"] == (
            'Bearer realm="mmoe-service", error="invalid_token"'
        )
        for almost in (KEY[:-1], KEY + "x", f"Basic {KEY}"):
            response = client.get("/models", headers={"Authorization": almost})
            assert response.status_code == 401, almost
        answered = client.post(
            "/predict", json={"instances": [ROW]}, headers={"Authorization": f"bearer {KEY}"}
        )
        assert answered.status_code == 200


def test_the_401_bodies_are_the_documented_examples(repository: Path) -> None:
    with client_for(repository, api_key=KEY) as client:
        schema = client.get("/openapi.json").json()
        content = schema["paths"]["/admin/reload"]["post"]["responses"]["401"]["content"]
        examples = {name: example["value"] for name, example in content["application/json"][
            "examples"].items()}  # fmt: skip
        assert schema["paths"]["/admin/reload"]["post"]["security"] == [
            {"bearer": []},
            {"apiKey": []},
        ]
        assert {"bearer": [], "apiKey": []}.keys() == schema["components"][
            "securitySchemes"].keys()  # fmt: skip
        no_key = client.post("/admin/reload", headers={"X-Request-ID": examples["no_API_key"][
            "error"]["request_id"]})  # fmt: skip
        assert no_key.json() == examples["no_API_key"]
        wrong = client.post("/admin/reload", headers={
            "X-Request-ID": examples["wrong_API_key"]["error"]["request_id"],
            "Authorization": "Bearer nope"})  # fmt: skip
        assert wrong.json() == examples["wrong_API_key"]


def test_the_key_is_never_logged(repository: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with client_for(repository, api_key=KEY, inference_needs_key=True, access_log=True) as client:
        client.post("/admin/reload", headers={"Authorization": f"Bearer {KEY}"})
        client.post("/predict", json={"instances": [ROW]}, headers={"X-API-Key": KEY})
        client.get("/models", headers={"Authorization": f"Bearer {KEY}x"})
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert "POST /admin/reload 200" in logged  # the access log did run
    assert KEY not in logged
    described = settings_for(repository, api_key=KEY).describe()
    assert described["MMOE_API_KEY"] == "********"
    assert KEY not in repr(settings_for(repository, api_key=KEY))


def test_a_short_key_or_a_key_requirement_without_a_key_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters long") as refused:
        Settings(api_key="short-secret")
    assert "short-secret" not in str(refused.value)
    with pytest.raises(ValidationError, match="MMOE_INFERENCE_NEEDS_KEY=true needs an API key"):
        Settings(inference_needs_key=True)
    assert Settings(api_key="").api_key is None  # compose passes an unset variable as empty


def test_cors_is_off_by_default(repository: Path) -> None:
    with client_for(repository) as client:
        response = client.get("/models", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in response.headers
        preflight = client.options(
            "/predict",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 405


def test_cors_allows_the_configured_origins_and_preflights_need_no_key(repository: Path) -> None:
    allowed = "https://app.example"
    with client_for(
        repository,
        api_key=KEY,
        inference_needs_key=True,
        cors_origins="https://app.example, https://other.example",
    ) as client:
        preflight = client.options(
            "/predict",
            headers={
                "Origin": allowed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == allowed
        refused = client.post("/predict", json={"instances": [ROW]}, headers={"Origin": allowed})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == allowed  # the page can read it
        assert "WWW-Authenticate" in refused.headers["access-control-expose-headers"]
        answered = client.post(
            "/predict",
            json={"instances": [ROW]},
            headers={"Origin": allowed, "Authorization": f"Bearer {KEY}"},
        )
        assert answered.status_code == 200
        assert answered.headers["access-control-allow-origin"] == allowed
        stranger = client.get("/health/live", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers
