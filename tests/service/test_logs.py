"""Log lines: JSON objects with the documented fields, the request id from the context (worker
threads included), and the text format unchanged outside requests."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import anyio
import pytest
from anyio import to_thread

from service.logs import JsonFormatter, RequestIdFilter, configure_logging, current_request_id


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_the_documented_fields(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("hello %s", "world", extra={"route": "/predict", "status": 200})
    [line] = lines(stream)
    assert list(line) == ["time", "level", "logger", "message", "request_id", "route", "status"]
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "test.logs", "hello world")
    assert (line["request_id"], line["route"], line["status"]) == (None, "/predict", 200)
    assert str(line["time"]).endswith("+00:00")


def test_an_exception_is_one_line_with_its_traceback(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    [line] = lines(stream)
    assert line["message"] == "failed"
    assert "Traceback" in str(line["exception"]) and "ValueError: boom" in str(line["exception"])


def test_the_request_id_reaches_lines_from_worker_threads(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    async def serve() -> None:
        token = current_request_id.set("req-42")
        try:
            logger.info("on the loop")
            await to_thread.run_sync(logger.info, "in a worker thread")
        finally:
            current_request_id.reset(token)
        logger.info("after the request")

    anyio.run(serve)
    assert [(line["message"], line["request_id"]) for line in lines(stream)] == [
        ("on the loop", "req-42"),
        ("in a worker thread", "req-42"),
        ("after the request", None),
    ]


def test_the_text_format_shows_the_request_id_only_inside_requests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "text")
    try:
        logging.getLogger("service").info("outside")
        token = current_request_id.set("req-7")
        logging.getLogger("service").info("inside")
        current_request_id.reset(token)
    finally:
        logging.basicConfig(force=True, handlers=[logging.NullHandler()])
    text = capsys.readouterr().err.splitlines()
    assert text[0].endswith(" INFO service: outside")
    assert text[1].endswith(" INFO service [req-7]: inside")
