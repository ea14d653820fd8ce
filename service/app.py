"""The application factory: `create_app(settings)` builds everything; importing does nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

from anyio import to_thread
from fastapi import FastAPI

from service import api_docs, exception_handlers
from service.fast_predict import FastPredictEndpoint, ServiceApp
from service.handlers import HealthHandler, ModelsHandler, PredictHandler, ServiceState
from service.inference import InferenceRunner, RunnerOptions
from service.middleware import RequestIdMiddleware
from service.repository import ModelRepository
from service.routes import build_router
from service.runtime import RuntimeOptions
from service.settings import Settings

logger = logging.getLogger(__name__)


def load_repository(settings: Settings) -> ModelRepository:
    """Load and verify every model version the settings point at (blocking)."""
    options = RuntimeOptions(settings.provider, settings.intra_op_threads)
    return ModelRepository.load(
        settings.model_repository, settings.model_name, settings.model_version, options
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


def create_app(
    settings: Settings | None = None,
    repository: ModelRepository | None = None,
    runner: InferenceRunner | None = None,
    fast_predict: bool | None = None,
) -> FastAPI:
    """The service. Given no `repository`, it loads one from `settings` at start-up (lifespan);
    until then /health/ready and every model route answer 503. The inference runner starts and
    drains with the app. `fast_predict` (default: the `fast_path` setting) False serves
    /predict through FastAPI's own route and parses every body with the plain parser (the plain
    path: the same answers, slower)."""
    settings = settings if settings is not None else Settings()
    fast_predict = settings.fast_path if fast_predict is None else fast_predict
    state = ServiceState(repository)
    runner = runner if runner is not None else InferenceRunner(runner_options(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.repository is None:
            state.repository = await to_thread.run_sync(load_repository, settings)
        await runner.start()
        try:
            yield
        finally:
            await runner.aclose()

    app = ServiceApp(
        title="MMoE multi-task model service",
        version=metadata.version("mmoe-service"),
        description=(
            "Per-task predictions and gate weights from MMoE, OMoE and Shared-Bottom models, "
            "served by onnxruntime. Every error has the shape "
            '`{"error": {"code", "message", "details", "request_id"}}`.'
        ),
        lifespan=lifespan,
        docs_url=None,  # api_docs serves /docs and /redoc without a CDN
        redoc_url=None,
    )
    app.state.service = state
    app.state.runner = runner
    app.add_middleware(RequestIdMiddleware)
    exception_handlers.install(app)
    api_docs.install(app)
    predict = PredictHandler(state, runner, settings.max_instances, fast_parse=fast_predict)
    if fast_predict:
        app.fast_predict = FastPredictEndpoint(predict, settings.max_body_bytes)
    app.include_router(
        build_router(HealthHandler(state), ModelsHandler(state), predict, settings.max_body_bytes)
    )
    return app
