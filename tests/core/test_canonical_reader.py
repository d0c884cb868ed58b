"""The canonical reader: the general parse's result, or None and the general parse decides."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core import canonical_reader
from resolver.core.canonical_reader import CanonicalRead, read_canonical
from resolver.core.document import (
    HostEntry,
    MappingDocument,
    decode_document,
    document_from_json,
    make_document,
)
from resolver.errors import DocumentError
from tests.core.strategies import documents

WEB = HostEntry("web", "us-east-1", "i-0123456789abcdef0", "us-east-1a", "10.0.0.1", None, ())


def _general(data: bytes) -> CanonicalRead | str:
    """What the general parse makes of ``data``: the document and its span, or the error."""
    try:
        decoded = decode_document(data)
        document = document_from_json(decoded.raw)
    except DocumentError as exc:
        return str(exc)
    assert decoded.hosts_span is not None
    return CanonicalRead(document, decoded.hosts_span)


def _bytes(*hosts: HostEntry, regions: tuple[str, ...] = ("us-east-1", "eu-west-1")) -> bytes:
    return make_document(
        serial=3, generated_at="2026-01-02T03:04:05Z", tag_key="dns", regions=regions, hosts=hosts
    ).to_bytes()


@settings(max_examples=300)
@given(document=documents())
def test_a_published_document_is_read_as_the_general_parse_reads_it(
    document: MappingDocument,
) -> None:
    data = document.to_bytes()
    read = read_canonical(data)
    if not document.hosts:
        assert read is None  # nothing to gain: the general parse takes it
        return
    assert read == _general(data)
    assert read is not None
    assert read.document == document


TOKENS = (
    "},{",
    '}],"regions":[',
    '"hosts":[]',
    '"name":"web"',
    "\\u0061",
    " ",
    '"',
    "{",
    "}",
    "[",
    "]",
    ",",
    "null",
    "A",
    ".",
    "0",
)


@settings(max_examples=500)
@given(
    document=documents(),
    at=st.integers(min_value=0),
    token=st.sampled_from(TOKENS),
    replace=st.integers(min_value=0, max_value=3),
)
def test_whatever_it_reads_the_general_parse_reads_alike(
    document: MappingDocument, at: int, token: str, replace: int
) -> None:
    """Tokens that could mislead it, anywhere: it reads the same document or declines."""
    text = document.to_bytes().decode("ascii")
    at %= len(text)
    mutated = (text[:at] + token + text[at + replace :]).encode()
    read = read_canonical(mutated)
    if read is not None:
        assert read == _general(mutated)


def _edit(data: bytes, old: str, new: str) -> bytes:
    assert old.encode() in data
    return data.replace(old.encode(), new.encode(), 1)


API = WEB._replace(name="api", instance_id="i-0123456789abcdef1", private_ipv4="10.0.0.2")
WEB_EU = WEB._replace(
    region="eu-west-1", az="eu-west-1a", instance_id="i-0123456789abcdef2", private_ipv4="10.1.0.1"
)


@pytest.mark.parametrize(
    ("case", "data", "general"),
    [
        # Entries the general parse accepts and puts in canonical order itself.
        ("out of order", _edit(_bytes(API, WEB), '"name":"api"', '"name":"zzz"'), "accepts"),
        (
            "one name's instances out of order",
            _edit(
                _bytes(WEB, WEB._replace(instance_id="i-0123456789abcdef7")),
                WEB.instance_id,
                "i-0123456789abcdef9",
            ),
            "accepts",
        ),
        ("an escape", _edit(_bytes(WEB), '"name":"web"', '"name":"w\\u0065b"'), "accepts"),
        ("an IPv6 address in capitals", _bytes(WEB._replace(ipv6=("2600:1F18::1",))), "accepts"),
        # Entries it refuses, in words the reader leaves to it.
        ("an IPv6 address that is none", _bytes(WEB._replace(ipv6=("2600:::1",))), "refuses"),
        (
            "an address with a leading zero",
            _bytes(WEB._replace(private_ipv4="10.0.0.01")),
            "refuses",
        ),
        ("a reserved name", _bytes(WEB._replace(name="web.local")), "refuses"),
        ("a name under AWS's", _bytes(WEB._replace(name="ip-1.ec2.internal")), "refuses"),
        ("a name over 253 octets", _bytes(WEB._replace(name="a." * 126 + "bc")), "refuses"),
        ("a region not listed", _bytes(WEB, regions=("eu-west-1",)), "refuses"),
        (
            "a name twice on one instance",
            _bytes(WEB, WEB_EU._replace(instance_id=WEB.instance_id)),
            "refuses",
        ),
        (
            "an entry in between that it cannot read",
            _edit(_bytes(API, WEB), '},{"az"', '},{"az":"x","extra":{}},{"az"'),
            "refuses",
        ),
        (
            "a second hosts list",
            _edit(_bytes(WEB), '"schema":1', '"hosts":[],"schema":1'),
            "refuses",
        ),
        (
            "a second hosts list spelt with an escape",
            _edit(_bytes(WEB), '"schema":1', '"host\\u0073":[],"schema":1'),
            "refuses",
        ),
        ("whitespace", _edit(_bytes(WEB), '"az":', '"az": '), "accepts"),
        ("a bad header", _edit(_bytes(WEB), '"schema":1', '"schema":2'), "refuses"),
        ("truncated", _bytes(API, WEB)[:-40], "refuses"),
        ("not ASCII", _edit(_bytes(WEB), '"tag_key":"dns"', '"tag_key":"dn\u00e9"'), "accepts"),
    ],
)
def test_what_it_leaves_to_the_general_parse(case: str, data: bytes, general: str) -> None:
    assert read_canonical(data) is None, case
    try:
        decoded = decode_document(data)
        document_from_json(decoded.raw)
    except DocumentError:
        assert general == "refuses", case
    else:
        assert general == "accepts", case


def test_a_name_on_several_instances_and_regions_is_read() -> None:
    """Repeated names are where the order and uniqueness checks look closely."""
    data = _bytes(API, WEB, WEB_EU, WEB._replace(instance_id="i-0123456789abcdef7"))
    read = read_canonical(data)
    assert read is not None
    assert read == _general(data)
    assert [host.name for host in read.document.hosts] == ["api", "web", "web", "web"]


@pytest.mark.parametrize(
    ("texts", "column"),
    [
        (["", ""], [(), ()]),
        (['"2600:1f18::1"', "", '"2600:1f18::2"'], [("2600:1f18::1",), (), ("2600:1f18::2",)]),
        # One list that is not a single plain address: each list goes through ipv6_list.
        (
            ['"2600:1f18::1"', '"2600:1f18::3","2600:1f18::2"'],
            [("2600:1f18::1",), ("2600:1f18::2", "2600:1f18::3")],
        ),
        # Not in canonical form: ipv6_list writes it so.
        (['"2600:1f18::1"', '"2600:1f18:0:0:0:0:0:2"'], [("2600:1f18::1",), ("2600:1f18::2",)]),
        (['"2600:1f18::1"', '"2600:1f18::g"'], None),
    ],
)
def test_ipv6_lists_are_read_as_ipv6_list_reads_them(
    texts: list[str], column: list[tuple[str, ...]] | None
) -> None:
    assert canonical_reader._ipv6_column(texts) == column
