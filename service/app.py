"""The application factory: `create_app(settings)` builds everything; importing does nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

from anyio import to_thread
from fastapi import FastAPI

from service import api_docs, exception_handlers
from service.handlers import HealthHandler, ModelsHandler, PredictHandler, ServiceState
from service.inference import InferenceRunner, ThreadPoolRunner
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


def create_app(
    settings: Settings | None = None,
    repository: ModelRepository | None = None,
    runner: InferenceRunner | None = None,
) -> FastAPI:
    """The service. Given no `repository`, it loads one from `settings` at start-up (lifespan);
    until then /health/ready and every model route answer 503."""
    settings = settings if settings is not None else Settings()
    state = ServiceState(repository)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.repository is None:
            state.repository = await to_thread.run_sync(load_repository, settings)
        yield

    app = FastAPI(
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
    app.add_middleware(RequestIdMiddleware)
    exception_handlers.install(app)
    api_docs.install(app)
    predict = PredictHandler(state, runner or ThreadPoolRunner(), settings.max_instances)
    app.include_router(
        build_router(HealthHandler(state), ModelsHandler(state), predict, settings.max_body_bytes)
    )
    return app
