"""docs/api.md's error table lists every code the service answers, and no other."""

from __future__ import annotations

import re

from service.client import ERROR_CLASSES
from tests.support import REPO_ROOT

# Codes answered outside `service.errors`: Starlette's routing, the API key layer
# (`service.auth`), and the connection layer (`service.connections`).
OTHER_CODES = {
    "not_found", "method_not_allowed", "unauthorized", "admin_disabled",
    "invalid_http", "headers_too_large", "too_many_connections",
}  # fmt: skip
# A code the service raises but never shows: the Open Inference Protocol's routes (/v2) answer
# `{"error": "<message>"}`, without a code.
PROTOCOL_ONLY = {"invalid_inference_request"}


def test_the_error_table_lists_every_code() -> None:
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    documented = set(re.findall(r"^\| \d{3} +\| `([a-z_]+)` +\|", text, flags=re.MULTILINE))
    assert documented == (set(ERROR_CLASSES) - PROTOCOL_ONLY) | OTHER_CODES
