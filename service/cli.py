"""`mmoe-serve` / `python -m service`: load the models, then serve them with uvicorn.

Configuration comes from `MMOE_*` environment variables only (see `--help`). The models are loaded
and verified before the port opens, so a broken model or an unavailable provider stops the start-up
with one clear message and exit status 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from service.errors import ModelLoadError
from service.settings import ENV_PREFIX, Settings
from service.validation_errors import describe_problems

logger = logging.getLogger("service")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    lines = []
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        lines.append(f"  {ENV_PREFIX}{name.upper():<18} {field.description} (default: {default})")
    return argparse.ArgumentParser(
        prog="mmoe-serve",
        description="Serve the model repository over REST (onnxruntime + FastAPI + uvicorn).",
        epilog="settings, from environment variables:\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        problems = describe_problems(error.errors(), name=lambda field: ENV_PREFIX + field.upper())
        print(f"mmoe-serve: invalid settings: {problems}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT, force=True)
    logger.info("settings: %s", json.dumps(settings.describe()))

    from service.app import create_app, load_repository  # after logging is set up

    try:
        repository = load_repository(settings)
    except ModelLoadError as error:
        logger.error("cannot start: %s", error)
        return 1
    for model in repository:
        logger.info("serving %s version %d on %s", model.name, model.version, model.provider)
    default = repository.default
    logger.info("default model: %s version %d", default.name, default.version)

    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    logger.info("uvicorn with loop=%s http=%s", loop, http)
    uvicorn.run(
        create_app(settings, repository),
        host=settings.host,
        port=settings.port,
        loop=loop,
        http=http,
        log_level=settings.log_level,
        log_config=None,
        access_log=settings.log_level == "debug",
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
