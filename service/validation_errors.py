"""One way to say what pydantic rejected: each problem as `location: message`.

Used for every validated input the project reads: the service's settings, model cards and request
parameters, and training's configuration files and options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def location_of(problem: Mapping[str, Any]) -> str:
    """The dotted path of a problem: `data.correlation`, `path.item_id`, or '' for the whole."""
    return ".".join(str(part) for part in problem["loc"])


def message_of(problem: Mapping[str, Any]) -> str:
    """pydantic's message, without the 'Value error, ' it puts before our own validators'."""
    if problem["type"] == "extra_forbidden":
        return "unknown key"
    return str(problem["msg"]).removeprefix("Value error, ")


def describe_problems(
    problems: Iterable[Mapping[str, Any]],
    name: Callable[[str], str] = lambda location: location,
    show_input: bool = False,
) -> str:
    """'; '-joined `name(location): message`, with ` (got <input>)` when `show_input`."""
    described = []
    for problem in problems:
        text = message_of(problem)
        given = problem.get("input")
        if show_input and given is not None and not isinstance(given, dict):
            text += f" (got {given!r})"
        location = name(location_of(problem))
        described.append(f"{location}: {text}" if location else text)
    return "; ".join(described)
