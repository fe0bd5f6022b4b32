"""Platform parsing and matching."""

from __future__ import annotations

import pytest

from mirror.oci.platform import Platform


def test_parse_and_print() -> None:
    p = Platform.parse("linux/arm64/v8")
    assert (p.os, p.architecture, p.variant) == ("linux", "arm64", "v8")
    assert str(p) == "linux/arm64/v8"
    w = Platform.parse("windows:10.0.17763/amd64")
    assert (w.os, w.os_version) == ("windows", "10.0.17763")
    assert str(w) == "windows:10.0.17763/amd64"


@pytest.mark.parametrize("bad", ["linux", "linux/", "/amd64", "a/b/c/d", ""])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid platform"):
        Platform.parse(bad)


@pytest.mark.parametrize(
    ("want", "have", "ok"),
    [
        ("linux/arm64", Platform("linux", "arm64", "v8"), True),
        ("linux/arm64/v8", Platform("linux", "arm64"), True),
        ("linux/arm64/v8", Platform("linux", "aarch64"), True),
        ("linux/amd64", Platform("linux", "x86_64"), True),
        ("linux/amd64", Platform("linux", "arm64"), False),
        ("linux/arm/v6", Platform("linux", "arm", "v7"), False),
        ("linux/arm", Platform("linux", "arm", "v7"), True),
        ("windows/amd64", Platform("windows", "amd64", os_version="10.0.17763.1879"), True),
        ("windows:10.0.17763/amd64", Platform("windows", "amd64", None, "10.0.17763.1879"), True),
        ("windows:10.0.20348/amd64", Platform("windows", "amd64", None, "10.0.17763.1879"), False),
        ("linux/amd64", Platform("windows", "amd64"), False),
    ],
)
def test_matching(want: str, have: Platform, ok: bool) -> None:
    assert Platform.parse(want).matches(have) is ok


def test_json_round_trip() -> None:
    obj = {"architecture": "amd64", "os": "windows", "os.version": "10.0.1", "variant": "v3"}
    assert Platform.from_json(obj).to_json() == obj
