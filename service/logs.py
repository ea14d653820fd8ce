"""Log lines for people (text) or for machines (JSON, one object per line), with the request id.

The request being served lives in a context variable, set by the request middleware: every line
logged while a request is served, from any logger (the service's, uvicorn's, onnxruntime's
Python side) and from worker threads started with anyio (which copy the context), carries its
id. JSON lines hold `time`, `level`, `logger`, `message`, `request_id`, and, where the line says
them, `route`, `status` and `duration_ms` (the access log line does), `exception` with the
traceback. Training uses the same formats (`mmoe-train --log-format json`).

This module imports only the standard library and orjson, so training can use it.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Final, Literal

import orjson

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"
# Fields a log call may pass with `extra=` that a JSON line carries as its own keys.
EXTRA_FIELDS: Final = ("route", "method", "path", "status", "duration_ms", "model", "version")

current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamp every record with the id of the request being served (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        record.request_id = request_id
        record.request_tag = f" [{request_id}]" if request_id is not None else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id, and
    the fields of EXTRA_FIELDS the call passed."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for field in EXTRA_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Send every logger's lines to stderr in `log_format`, each stamped with the request id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, defaults={"request_tag": ""}))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
