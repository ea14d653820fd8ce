"""Routes for the people running the service: Prometheus metrics and the admin reload."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service import schemas
from service.errors import ReloadFailedError
from service.handlers import AdminHandler
from service.json_encoding import encode
from service.metrics import ServiceMetrics
from service.reloading import ReloadReport

METRICS_PATH = "/metrics"
RELOAD_PATH = "/admin/reload"


def _failure_message(report: ReloadReport) -> str:
    if report.outcome == "rejected":
        return f"the reload was rejected: {report.reason}; the versions loaded before keep serving"
    failed = "; ".join(
        f"{failure.model} {'promoted.json' if failure.version is None else failure.version}: "
        f"{failure.reason}"
        for failure in report.failed
    )
    return (
        f"{len(report.failed)} version(s) or promotion(s) on disk are not served: {failed}; "
        "every other change was applied, and what was served before keeps serving"
    )


def build_operations_router(admin: AdminHandler, metrics: ServiceMetrics | None) -> APIRouter:
    router = APIRouter()

    if metrics is not None:

        @router.get(
            METRICS_PATH,
            tags=["operations"],
            response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "the metrics"}},
        )
        async def prometheus_metrics(request: Request) -> Response:
            """Prometheus metrics: requests, latency, batches, queue depth, model loads and
            reloads, models in use, and gate utilisation per model, task and expert (see
            docs/operations.md). OpenMetrics when the scraper asks for it."""
            body, content_type = metrics.render(request.headers.get("accept", ""))
            return Response(body, media_type=content_type)

    @router.post(
        RELOAD_PATH,
        tags=["operations"],
        response_model=schemas.ReloadResult,
        responses={409: {"model": schemas.ErrorResponse}, 503: {"model": schemas.ErrorResponse}},
    )
    async def reload_models() -> Response:
        """Load what changed in the model repository now, verified as at start-up, and swap it
        in; failed versions are tried again. 200 when every version on disk is served; 409
        (details: this same report) when one failed or the reload was rejected: what was
        served before keeps serving. Needs the API key."""
        report = await admin.reload()
        if not report.ok:
            raise ReloadFailedError(_failure_message(report), report.as_dict())
        return Response(encode(report.as_dict()), media_type="application/json")

    return router
