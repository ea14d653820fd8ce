"""The application factory: `create_app(settings)` builds everything; importing does nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

from anyio import to_thread
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from service import api_docs, exception_handlers, openapi, ui
from service.auth import ApiKeyMiddleware
from service.contract import OUTPUT_GATES
from service.fast_predict import FastPredictEndpoint, ServiceApp
from service.handlers import (
    AdminHandler,
    HealthHandler,
    ModelsHandler,
    PredictHandler,
    ServiceState,
)
from service.inference import BatchObserver, BatchReport, InferenceRunner, RunnerOptions
from service.metrics import ServiceMetrics
from service.middleware import RequestMiddleware
from service.model import ServedModel
from service.oip.handlers import InferenceProtocolHandler
from service.oip.routes import build_protocol_router
from service.ops_routes import build_operations_router
from service.reloading import RepositoryReloader, RepositoryStatus
from service.repository import ModelRepository
from service.request_body import BodyBudget, BodyLimits
from service.routes import answer_head, build_router
from service.runtime import RuntimeOptions
from service.settings import Settings

logger = logging.getLogger(__name__)


def runtime_options(settings: Settings) -> RuntimeOptions:
    return RuntimeOptions(settings.provider, settings.intra_op_threads)


def load_repository(settings: Settings) -> ModelRepository:
    """Load and verify every model version the settings point at (blocking)."""
    return ModelRepository.load(
        settings.model_repository,
        settings.model_name,
        settings.model_version,
        runtime_options(settings),
    )


def runner_options(settings: Settings) -> RunnerOptions:
    return RunnerOptions(
        batching=settings.batching,
        max_batch_size=settings.max_batch_size,
        max_batch_delay_s=settings.max_batch_delay_us / 1e6,
        concurrency=settings.inference_concurrency,
        max_queued=settings.max_queued_requests,
        inline_max_rows=settings.inline_max_rows,
    )


def body_limits(settings: Settings) -> BodyLimits:
    return BodyLimits(settings.max_body_bytes, settings.max_inflight_body_bytes)


def create_app(
    settings: Settings | None = None,
    repository: ModelRepository | None = None,
    runner: InferenceRunner | None = None,
    fast_predict: bool | None = None,
) -> FastAPI:
    """The service. Given no `repository`, it loads one from `settings` at start-up (lifespan);
    until then /health/ready and every model route answer 503. The inference runner starts and
    drains with the app; with `reload_interval_s` set, the repository is polled for changes
    while the app runs. `fast_predict` (default: the `fast_path` setting) False serves /predict
    through FastAPI's own route and parses every body with the plain parser (the plain path:
    the same answers, slower)."""
    settings = settings if settings is not None else Settings()
    fast_predict = settings.fast_path if fast_predict is None else fast_predict
    state = ServiceState(repository, RepositoryStatus(settings.reload_interval_s))
    metrics = ServiceMetrics(settings.gate_collapse_threshold) if settings.metrics else None
    if runner is None:
        observer = batch_observer(metrics) if metrics is not None else None
        runner = InferenceRunner(runner_options(settings), observer)
    reloader = RepositoryReloader(
        state,
        settings.model_repository,
        settings.model_name,
        settings.model_version,
        runtime_options(settings),
        metrics,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.repository is None:
            state.repository = await to_thread.run_sync(load_repository, settings)
        await runner.start()
        if metrics is not None:
            metrics.started(state.repository)  # (no model may stay referenced in this frame)
        polling = None
        if settings.reload_interval_s > 0:
            polling = asyncio.create_task(reloader.poll_forever(settings.reload_interval_s))
            logger.info(
                "checking %s for new model versions every %g s",
                settings.model_repository,
                settings.reload_interval_s,
            )
        try:
            yield
        finally:
            if polling is not None:
                polling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await polling
            await runner.aclose()

    app = ServiceApp(
        title="MMoE multi-task model service",
        version=metadata.version("mmoe-service"),
        description=(
            "Per-task predictions and gate weights from MMoE, OMoE and Shared-Bottom models, "
            "served by onnxruntime. Every error has the shape "
            '`{"error": {"code", "message", "details", "request_id"}}`. The gate explorer is '
            "at [/ui](/ui), Prometheus metrics at /metrics."
        ),
        lifespan=lifespan,
        docs_url=None,  # api_docs serves /docs and /redoc without a CDN
        redoc_url=None,
        redirect_slashes=False,  # a redirect would take its Location from the Host header
    )
    app.state.service = state
    app.state.runner = runner
    app.state.reloader = reloader
    app.state.metrics = metrics
    if metrics is not None:
        metrics.watch_repository(lambda: state)
        metrics.watch_queue(lambda: runner.queued)
    for layer in reversed(edge_layers(settings, metrics, routes=app.router.routes)):
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    exception_handlers.install(app)
    api_docs.install(app)
    openapi.install(app, lambda: state.repository, settings.max_instances)
    ui.install(app)
    predict = PredictHandler(
        state, runner, settings.max_instances, fast_parse=fast_predict, metrics=metrics
    )
    bodies = BodyBudget(body_limits(settings))
    app.state.bodies = bodies
    if fast_predict:
        # The same layers in front of the fast endpoint as in front of FastAPI's routes.
        endpoint: ASGIApp = FastPredictEndpoint(predict, bodies)
        fast_layers = edge_layers(
            settings, metrics, route="/predict", inner_sets_request_id=True, admin=False
        )
        for layer in reversed(fast_layers):
            endpoint = layer.cls(endpoint, *layer.args, **layer.kwargs)
        app.fast_predict = endpoint
    app.include_router(build_router(HealthHandler(state), ModelsHandler(state), predict, bodies))
    app.include_router(answer_head(build_operations_router(AdminHandler(state, reloader), metrics)))
    protocol = InferenceProtocolHandler(state, runner, settings.max_instances)
    app.include_router(answer_head(build_protocol_router(protocol, bodies)))
    answer_head(app.router)  # the docs and /ui
    return app


def edge_layers(
    settings: Settings,
    metrics: ServiceMetrics | None,
    routes: list[BaseRoute] | None = None,
    route: str | None = None,
    inner_sets_request_id: bool = False,
    admin: bool = True,
) -> list[Middleware]:
    """What stands in front of every route, outermost first: the request layer (id, log context,
    metrics, access log, JSON 500); CORS when origins are configured (outside the key check:
    preflights need no key, and a 401 carries the CORS headers, so a browser can read it); the
    API key check. Without `admin` (an endpoint that is no admin route), the key check is left
    out unless inference routes need the key. `routes`, `route` and `inner_sets_request_id` go
    to the request layer."""
    layers = [
        Middleware(
            RequestMiddleware,
            observe=metrics.observe_request if metrics is not None else None,
            access_log=settings.access_log,
            routes=routes,
            route=route,
            inner_sets_request_id=inner_sets_request_id,
        )
    ]
    if settings.cors_origins:
        layers.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
                expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate"],
            )
        )
    if admin or settings.inference_needs_key:
        api_key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        layers.append(
            Middleware(
                ApiKeyMiddleware, api_key=api_key, inference_needs_key=settings.inference_needs_key
            )
        )
    return layers


def batch_observer(metrics: ServiceMetrics) -> BatchObserver:
    """The runner's report of each onnxruntime call, into the metrics."""

    def observe(report: BatchReport) -> None:
        model = report.model
        assert isinstance(model, ServedModel)
        outputs = report.outputs
        gates = None if outputs is None else outputs.get(OUTPUT_GATES)
        metrics.observe_batch(
            model, report.requests, report.rows, report.seconds, gates, report.error is not None
        )

    return observe
