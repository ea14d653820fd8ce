"""The one version rule that the repository, the routes, the settings and the publisher share."""

from __future__ import annotations

import pytest

from service.contract import MAX_VERSION, is_version, parse_version


@pytest.mark.parametrize(("text", "version"), [("1", 1), ("42", 42), ("2147483647", MAX_VERSION)])
def test_canonical_decimal_numbers_are_versions(text: str, version: int) -> None:
    assert parse_version(text) == version
    assert is_version(text)


@pytest.mark.parametrize(
    "text",
    ["0", "01", "-1", "+1", " 1", "1 ", "1.0", "1e3", "²", "٣", "latest", "", "2147483648",
     "9" * 5000],
)  # fmt: skip
def test_everything_else_is_not_a_version(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"^a version is a whole number from 1 to 2147483647 with no leading zero$"
    ):
        parse_version(text)
    assert not is_version(text)
