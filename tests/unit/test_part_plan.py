"""The packing of split bundles (first-fit decreasing by image) and the sizes media take."""

from __future__ import annotations

import click
import pytest

from mirror.archive.part_plan import Unit, member_cost, plan_parts
from mirror.cli.output import parse_media_size
from mirror.errors import InvalidReference

KIB = 1024


def _d(name: str) -> str:
    return f"sha256:{name * 64}"[:71]


def _cost(blobs: set[str], sizes: dict[str, int]) -> int:
    return sum(member_cost(sizes[d], d) for d in blobs)


def test_an_image_stays_in_one_part_where_it_fits() -> None:
    sizes = {_d("a"): 30 * KIB, _d("b"): 30 * KIB, _d("c"): 50 * KIB, _d("e"): 10 * KIB}
    units = [
        Unit("one", frozenset({_d("a"), _d("b")})),
        Unit("two", frozenset({_d("c"), _d("e")})),
    ]
    parts = plan_parts(units, sizes, 64 * KIB)
    for unit in units:
        assert any(unit.blobs <= part for part in parts)
    assert all(_cost(part, sizes) <= 64 * KIB for part in parts)


def test_a_shared_blob_is_carried_twice_so_that_each_image_is_whole() -> None:
    shared, mine, theirs = _d("s"), _d("m"), _d("t")
    sizes = {shared: 20 * KIB, mine: 40 * KIB, theirs: 40 * KIB}
    units = [Unit("one", frozenset({shared, mine})), Unit("two", frozenset({shared, theirs}))]
    parts = plan_parts(units, sizes, 64 * KIB)
    assert len(parts) == 2
    assert all(shared in part for part in parts)


def test_an_image_larger_than_a_part_is_spread_largest_blob_first() -> None:
    sizes = {_d(c): 40 * KIB for c in "abc"} | {_d("d"): 10 * KIB}
    units = [Unit("big", frozenset(sizes))]
    parts = plan_parts(units, sizes, 64 * KIB)
    assert set().union(*parts) == set(sizes)
    assert sum(len(p) for p in parts) == len(sizes)  # spread, never carried twice
    assert all(_cost(part, sizes) <= 64 * KIB for part in parts)
    assert len(parts) == 3


def test_a_blob_larger_than_a_part_is_refused_by_name() -> None:
    sizes = {_d("a"): 70 * KIB, _d("b"): KIB}
    with pytest.raises(InvalidReference, match=f"{_d('a')} of big is 71680 bytes"):
        plan_parts([Unit("big", frozenset(sizes))], sizes, 64 * KIB)


def test_long_names_and_huge_blobs_are_costed_with_their_pax_headers() -> None:
    assert member_cost(1, _d("a")) == 1024
    assert member_cost(1, "sha512:" + "a" * 128) == 2048
    assert member_cost(8**11, _d("a")) == 3 * 512 + 8**11


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4.7GB", 4_700_000_000),
        ("64MiB", 64 * 1024 * 1024),
        ("4GiB", 4 * 1024**3),
        ("650MB", 650_000_000),
        ("24kB", 24_000),
        ("40000", 40_000),
        ("40000B", 40_000),
    ],
)
def test_media_sizes(text: str, size: int) -> None:
    assert parse_media_size(click.Context(click.Command("x")), click.Option(["--s"]), text) == size


@pytest.mark.parametrize("text", ["", "0", "GB", "4.7XB", "-1MB", "1iB"])
def test_what_is_not_a_media_size(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_media_size(click.Context(click.Command("x")), click.Option(["--s"]), text)
