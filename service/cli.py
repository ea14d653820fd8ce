"""`mmoe-serve` / `python -m service`: load the models, then serve them with uvicorn.

Configuration comes from `MMOE_*` environment variables, and `--host`/`--port`, which win over
theirs (see `--help`). The models are loaded and verified before the port opens, so a broken model
or an unavailable provider stops the start-up with one clear message; so does an address that
cannot be listened on. Every way the start-up can fail has its own exit status (EXIT_STATUSES).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from service.errors import ModelLoadError
from service.listen import EXIT_CANNOT_BIND, EXIT_PORT_IN_USE, ListenError, check_can_listen
from service.logs import configure_logging
from service.settings import ENV_PREFIX, Settings, unknown_variables
from service.validation_errors import describe_problems

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.repository import ModelRepository

logger = logging.getLogger("service")

EXIT_MODEL_LOAD = 1
EXIT_USAGE = 2
EXIT_STATUSES = {
    0: "stopped (Ctrl-C or SIGTERM)",
    EXIT_MODEL_LOAD: "a model cannot be served (the log line says which and why)",
    EXIT_USAGE: "invalid option or setting",
    EXIT_PORT_IN_USE: "the port is already in use",
    EXIT_CANNOT_BIND: "the address cannot be listened on (not this machine's, or no permission)",
}
# Settings that also have a command-line option, which wins over the environment variable.
OPTIONS: dict[str, tuple[str, type[str] | type[int]]] = {
    "host": ("--host", str),
    "port": ("--port", int),
}


def build_parser() -> argparse.ArgumentParser:
    lines = []
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        lines.append(f"  {ENV_PREFIX}{name.upper():<18} {field.description} (default: {default})")
    statuses = [f"  {status}  {meaning}" for status, meaning in EXIT_STATUSES.items()]
    parser = argparse.ArgumentParser(
        prog="mmoe-serve",
        description="Serve the model repository over REST (onnxruntime + FastAPI + uvicorn).",
        epilog="settings, from environment variables:\n"
        + "\n".join(lines)
        + "\n\nexit status:\n"
        + "\n".join(statuses),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, (option, kind) in OPTIONS.items():
        field = Settings.model_fields[name]
        parser.add_argument(
            option,
            type=kind,
            metavar=name.upper(),
            help=f"{field.description}; overrides {ENV_PREFIX}{name.upper()} "
            f"(default: {field.default})",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    given = {name: getattr(arguments, name) for name in OPTIONS}
    overrides = {name: value for name, value in given.items() if value is not None}

    def source(field: str) -> str:
        return OPTIONS[field][0] if field in overrides else ENV_PREFIX + field.upper()

    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        problems = describe_problems(error.errors(), name=source)
        print(f"mmoe-serve: invalid settings: {problems}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    logger.info("settings: %s", json.dumps(settings.describe()))  # the API key masked
    for line in unknown_variables(os.environ):
        logger.warning(line)

    from service.app import create_app, load_repository  # after logging is set up

    try:
        repository = load_repository(settings)
    except ModelLoadError as error:
        logger.error("cannot start: %s", error)
        return EXIT_MODEL_LOAD
    describe_repository(repository)

    try:
        check_can_listen(settings.host, settings.port)
    except ListenError as error:
        logger.error("cannot start: %s", error)
        return error.exit_status

    from service import server

    if settings.workers > 1:
        logger.info(
            "each of the %d workers keeps its own metrics and model repository: a scrape of "
            "/metrics or a POST /admin/reload reaches one of them (docs/operations.md, several "
            "workers)",
            settings.workers,
        )
    if settings.workers > 1:  # each worker process loads every model itself, at its start-up
        app: object = "service.cli:worker_app"
    else:
        app = create_app(settings, repository)
    # Only the app holds the repository from here on: a version a reload removes must not
    # stay referenced by this frame (it is unloaded when its last reference goes).
    del repository
    config = server.uvicorn_config(settings, app)
    logger.info("uvicorn with loop=%s, %d worker(s)", config.loop, settings.workers)
    server.run(config)
    return 0


def worker_app() -> FastAPI:
    """The app of one of several uvicorn worker processes (MMOE_WORKERS > 1)."""
    from service import connections, server
    from service.app import create_app

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    connections.configure(server.connection_limits(settings))  # this process's protocol
    return create_app(settings)


def describe_repository(repository: ModelRepository) -> None:
    for model in repository:
        logger.info("serving %s version %d on %s", model.name, model.version, model.provider)
    default = repository.default
    logger.info("default model: %s version %d", default.name, default.version)


if __name__ == "__main__":
    sys.exit(main())
