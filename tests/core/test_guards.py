"""Guards: the shrink limit and the serial order a new document must respect."""

from __future__ import annotations

import pytest

from resolver.core.document import HostEntry, MappingDocument, make_document
from resolver.core.guards import check_regions, check_serial, check_shrink, lost_share
from resolver.errors import DocumentError, DroppedRegionError, ShrinkError, StaleSerialError


def _document(
    names: list[str], serial: int = 10, regions: tuple[str, ...] = ("us-east-1",)
) -> MappingDocument:
    return make_document(
        serial=serial,
        generated_at="2024-05-01T12:00:00Z",
        tag_key="dns",
        regions=["us-east-1", *regions],
        hosts=[
            HostEntry(name, "us-east-1", f"i-{i:017x}", "us-east-1a", "10.0.0.1", None)
            for i, name in enumerate(names)
        ],
    )


def _names(count: int, prefix: str = "n") -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


@pytest.mark.parametrize(
    ("old", "new", "max_shrink", "share"),
    [
        (_names(2), _names(1), 0.5, 0.5),
        (_names(100), _names(100)[51:], 0.5, 0.51),
        (_names(100), _names(100)[50:], 0.5, 0.5),
        ([], [], 0.5, 0.0),
        ([], _names(3), 0.0, 0.0),
        (_names(4), _names(4, "m"), 1.0, 1.0),
        (_names(3), [], 1.0, 1.0),
        (_names(3), [*_names(3), "extra"], 0.0, 0.0),
        (_names(10), _names(10)[3:], 0.3, 0.3),
    ],
    ids=[
        "half-of-two",
        "51-percent",
        "50-percent",
        "empty-old-and-new",
        "empty-old",
        "rename-all-allowed-at-1",
        "all-lost-allowed-at-1",
        "growth",
        "30-percent-at-0.3",
    ],
)
def test_shrink_passes(old: list[str], new: list[str], max_shrink: float, share: float) -> None:
    assert lost_share(_document(old), _document(new)) == share
    if share <= max_shrink:
        check_shrink(_document(old), _document(new), max_shrink)
    else:
        with pytest.raises(ShrinkError):
            check_shrink(_document(old), _document(new), max_shrink)


@pytest.mark.parametrize(
    ("old", "new", "max_shrink", "message"),
    [
        (
            _names(100),
            _names(100)[51:],
            0.5,
            "new document loses 51 of 100 names (51%), more than the 50% allowed",
        ),
        (
            _names(4),
            _names(4, "m"),
            0.5,
            "new document loses 4 of 4 names (100%), more than the 50% allowed",
        ),
        (_names(2), [], 0.0, "new document loses 2 of 2 names (100%), more than the 0% allowed"),
        (
            _names(10),
            _names(10)[4:],
            0.3,
            "new document loses 4 of 10 names (40%), more than the 30% allowed",
        ),
    ],
    ids=["51-percent", "rename-all", "any-loss-at-0", "40-at-0.3"],
)
def test_shrink_fails(old: list[str], new: list[str], max_shrink: float, message: str) -> None:
    with pytest.raises(ShrinkError) as caught:
        check_shrink(_document(old), _document(new), max_shrink)
    assert str(caught.value) == message


def test_shrink_without_old_document_passes() -> None:
    check_shrink(None, _document([]), 0.0)


def test_names_count_not_instances() -> None:
    old = _document(["web", "web", "web", "api"])
    assert lost_share(old, _document(["web"])) == 0.5


@pytest.mark.parametrize(
    ("current", "new"), [(None, 1), (10, 10), (10, 11)], ids=["no-current", "equal", "newer"]
)
def test_serial_passes(current: int | None, new: int) -> None:
    check_serial(None if current is None else _document([], current), _document([], new))


def test_older_serial_is_stale() -> None:
    with pytest.raises(StaleSerialError) as caught:
        check_serial(_document([], 11), _document([], 10))
    assert str(caught.value) == "serial 10 is older than the serial 11 in force"
    assert isinstance(caught.value, DocumentError)


EU, AP = "eu-west-1", "ap-southeast-2"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (None, (), None),
        ((), (), None),
        ((), (EU, AP), None),
        ((EU,), (EU, AP), None),
        ((EU, AP), (EU,), "drops region ap-southeast-2, which"),
        ((EU, AP), (), "drops regions ap-southeast-2, eu-west-1, which"),
        ((AP,), (EU,), "drops region ap-southeast-2, which"),
    ],
    ids=["no-current", "same", "grown", "one-added", "one-dropped", "two-dropped", "swapped"],
)
def test_region_guard(
    old: tuple[str, ...] | None, new: tuple[str, ...], message: str | None
) -> None:
    """Every region in force stays, whatever names it holds: an empty region counts too."""
    current = None if old is None else _document(["web"], regions=old)
    candidate = _document(["web", "api"], regions=new)
    if message is None:
        check_regions(current, candidate)
        return
    with pytest.raises(DroppedRegionError) as caught:
        check_regions(current, candidate)
    assert str(caught.value) == (
        f"new document {message} the current document has: agents there would refuse it"
    )
    assert isinstance(caught.value, ShrinkError)
