"""The gate explorer at /ui: one static HTML page, a stylesheet and a script, shipped inside the
package (`service/ui_static/`), no build step, nothing loaded from elsewhere.

The page asks the API it is served by (relative URLs): /models for the choices, /predict for a
row's per-task predictions and gate weights (drawn as bars), /metrics for the live expert
utilisation of the chosen version. Its Content-Security-Policy allows this server alone and no
inline script.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse

UI_PATH = "/ui"
ASSETS_PATH = "/ui/assets"
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def static_directory() -> Path:
    return Path(str(files("service") / "ui_static"))


def install(app: FastAPI) -> None:
    directory = static_directory()
    app.mount(ASSETS_PATH, StaticFiles(directory=directory), name="ui-assets")

    @app.get(UI_PATH, include_in_schema=False)
    async def gate_explorer() -> FileResponse:
        return FileResponse(directory / "index.html", headers=SECURITY_HEADERS)
