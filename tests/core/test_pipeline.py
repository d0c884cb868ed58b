"""The reload pipeline: what an agent keeps of the document in force, and the guards on it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core.document import MappingDocument, parse_document
from resolver.core.guards import check_serial, check_shrink
from resolver.core.pipeline import (
    DocumentFacts,
    ZoneSettings,
    check_guards,
    document_fingerprint,
    load_document,
)
from resolver.errors import ShrinkError, StaleSerialError
from tests.core import strategies
from tests.documents import REGION, one_region_document

SETTINGS = ZoneSettings(view=REGION)


def _address(index: int) -> str:
    return f"10.0.{index // 250}.{index % 250 + 1}"


def _facts(serial: int, names: list[str]) -> DocumentFacts:
    data = one_region_document(serial, names, _address)
    return load_document(data, SETTINGS).facts


@settings(max_examples=60, deadline=None)
@given(document=strategies.documents())
def test_facts_keep_the_names_serial_and_time(document: MappingDocument) -> None:
    data = document.to_bytes()
    facts = DocumentFacts.of(parse_document(data), document_fingerprint(data))
    assert facts.names() == document.names()
    assert (facts.serial, facts.generated_at) == (document.serial, document.generated_at)


@settings(max_examples=60, deadline=None)
@given(old=strategies.documents(), new=strategies.documents(), limit=st.floats(0.0, 1.0))
def test_shrink_guard_gives_the_same_verdict_on_facts(
    old: MappingDocument, new: MappingDocument, limit: float
) -> None:
    def verdict(previous: MappingDocument | DocumentFacts) -> str:
        try:
            check_shrink(previous, new, limit)
        except ShrinkError as exc:
            return str(exc)
        return "accepted"

    assert verdict(DocumentFacts.of(old, document_fingerprint(old.to_bytes()))) == verdict(old)


def test_a_name_on_several_instances_is_kept_once() -> None:
    facts = _facts(3, ["web", "web", "api"])
    assert facts.names() == {"web", "api"}
    assert facts.names_text.count("web") == 1


def test_an_empty_document_has_no_names() -> None:
    assert _facts(1, []).names() == frozenset()


def test_fingerprint_follows_the_bytes() -> None:
    data = one_region_document(5, ["web"], _address)
    same = load_document(data, SETTINGS).facts
    assert same.fingerprint == load_document(bytes(data), SETTINGS).facts.fingerprint
    moved = one_region_document(5, ["web"], lambda _: "10.9.9.9")
    assert load_document(moved, SETTINGS).facts.fingerprint != same.fingerprint


def test_guards_run_against_the_facts_in_force() -> None:
    current = _facts(10, [f"n{i}" for i in range(10)])
    older = one_region_document(9, [f"n{i}" for i in range(10)], _address)
    with pytest.raises(StaleSerialError, match="serial 9 is older than the serial 10"):
        load_document(older, SETTINGS, current)
    shrunk = one_region_document(11, ["n0", "n1", "n2"], _address)
    with pytest.raises(ShrinkError, match="loses 7 of 10 names"):
        load_document(shrunk, SETTINGS, current)
    kept = one_region_document(11, [f"n{i}" for i in range(6)], _address)
    assert load_document(kept, SETTINGS, current).facts.serial == 11  # 40 % lost is allowed


@pytest.mark.parametrize("keep_records", [False, True])
def test_the_bytes_in_force_come_back_as_they_were_loaded(keep_records: bool) -> None:
    # An agent started from its last-known-good copy is sent the same bytes by its
    # source: they are not parsed and compiled a second time.
    data = one_region_document(5, ["web", "api"], _address)
    loaded = load_document(data, SETTINGS, keep_records=keep_records)
    again = load_document(
        bytes(data), SETTINGS, loaded.facts, keep_records=keep_records, previous=loaded
    )
    assert again is loaded
    moved = one_region_document(5, ["web", "api"], lambda _: "10.9.9.9")
    other = load_document(moved, SETTINGS, loaded.facts, keep_records=keep_records, previous=loaded)
    assert other is not loaded and other.facts.fingerprint != loaded.facts.fingerprint


@settings(max_examples=80, deadline=None)
@given(
    old=strategies.documents(),
    new=strategies.documents(),
    limit=st.floats(0.0, 1.0),
    same_names=st.booleans(),
)
def test_check_guards_gives_the_guards_verdicts(
    old: MappingDocument, new: MappingDocument, limit: float, same_names: bool
) -> None:
    """The shortcut for unchanged names must not change any verdict of the two guards."""
    if same_names:
        new = dataclasses.replace(new, hosts=old.hosts)
    current = DocumentFacts.of(old, b"old")
    facts = DocumentFacts.of(new, b"new")

    def verdict(check: Callable[[], None]) -> str:
        try:
            check()
        except (ShrinkError, StaleSerialError) as exc:
            return str(exc)
        return "accepted"

    def both() -> None:
        check_serial(current, new)
        check_shrink(current, new, limit)

    assert verdict(lambda: check_guards(current, facts, limit)) == verdict(both)
    assert verdict(lambda: check_guards(None, facts, limit)) == "accepted"
