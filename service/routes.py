"""HTTP routes: thin adapters from requests to handlers and from results to JSON responses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from service import schemas
from service.handlers import HealthHandler, ModelsHandler, PredictHandler
from service.json_encoding import encode
from service.request_body import BodyBudget

JSON = "application/json"


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": schemas.ErrorResponse} for status in statuses}


def _json(content: Any) -> Response:
    return Response(encode(content), media_type=JSON)


def build_router(
    health: HealthHandler,
    models: ModelsHandler,
    predict: PredictHandler,
    bodies: BodyBudget,
) -> APIRouter:
    router = APIRouter()

    @router.get("/health/live", response_model=schemas.Liveness, tags=["health"])
    async def live() -> Response:
        """The process is up and answering."""
        return _json(health.live())

    @router.get(
        "/health/ready", response_model=schemas.Readiness, responses=_errors(503), tags=["health"]
    )
    async def ready() -> Response:
        """200 once every model is loaded and passed its warm-up inference; 503 before."""
        return _json(health.ready())

    @router.get(
        "/models", response_model=schemas.ModelList, responses=_errors(503), tags=["models"]
    )
    async def list_models() -> Response:
        """Every model in the repository, its versions, and the default."""
        return _json(models.list_models())

    @router.get(
        "/models/{name}",
        response_model=schemas.ModelDetail,
        responses=_errors(404, 503),
        tags=["models"],
    )
    async def model(name: str) -> Response:
        """A model's versions and its latest version's metadata."""
        return _json(models.model(name))

    @router.get(
        "/models/{name}/versions/{version}",
        response_model=schemas.VersionMetadata,
        responses=_errors(404, 503),
        tags=["models"],
    )
    async def model_version(name: str, version: str) -> Response:
        """A version's card, execution provider and real input/output signature.
        `version` is a number or `latest`."""
        return _json(models.version(name, version))

    @router.post(
        "/predict",
        response_model=schemas.PredictResponse,
        responses=_errors(404, 413, 422, 500, 503),
        tags=["predict"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": schemas.PredictRequest.model_json_schema()}},
            }
        },
    )
    async def predict_route(request: Request) -> Response:
        """Per-task predictions and gate weights for a batch of instances.

        Concurrent requests for one model may run as one onnxruntime call. Errors: 422 for a
        malformed body or instance (the message names the instance), 413 over the instance or
        byte limit, 404 for an unknown model or version, 503 while loading or when the server
        is at capacity (with Retry-After)."""
        body = await bodies.read(request.scope, request.receive)
        try:
            return Response(await predict.predict(body), media_type=JSON)
        finally:
            bodies.release(body)

    return answer_head(router)


def answer_head(router: APIRouter) -> APIRouter:
    """Every GET route of `router` also answers HEAD (load balancers and uptime checks use it):
    the same status and headers, and no body (uvicorn sends none for HEAD). Call it on a router
    once its routes are in; `service.openapi` documents the HEAD operations."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.methods and "GET" in route.methods:
            route.methods.add("HEAD")
    return router
