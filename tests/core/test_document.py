"""The mapping document: canonical bytes, round trips, and validation naming the field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core.document import (
    HostEntry,
    MappingDocument,
    Rejection,
    decode_document,
    format_timestamp,
    make_document,
    parse_document,
)
from resolver.errors import DocumentError
from tests.core.strategies import documents

WEB_A = HostEntry("web", "us-east-1", "i-0123456789abcdef0", "us-east-1a", "10.0.0.1", None, ())
WEB_B = HostEntry(
    "web", "us-west-2", "i-0123456789abcdef1", "us-west-2b", "10.1.0.1", "54.0.0.1", ("2600::1",)
)
API = HostEntry("api", "us-east-1", "i-0123456789abcdef2", "us-east-1c", "10.0.0.2", "3.3.3.3", ())
BAD = Rejection("us-east-1", "i-0123456789abcdef3", "w\u00e9b\n$(x)", "name 'w\u00e9b' is bad")


def _document(hosts: list[HostEntry], rejected: Sequence[Rejection] = ()) -> MappingDocument:
    return make_document(
        serial=7,
        generated_at="2024-05-01T12:00:00Z",
        tag_key="dns",
        regions=["us-west-2", "us-east-1", "eu-west-1"],
        hosts=hosts,
        rejected=rejected,
    )


EXPECTED_BYTES = (
    b'{"generated_at":"2024-05-01T12:00:00Z","hosts":['
    b'{"az":"us-east-1c","instance_id":"i-0123456789abcdef2","ipv6":[],"name":"api",'
    b'"private_ipv4":"10.0.0.2","public_ipv4":"3.3.3.3","region":"us-east-1"},'
    b'{"az":"us-east-1a","instance_id":"i-0123456789abcdef0","ipv6":[],"name":"web",'
    b'"private_ipv4":"10.0.0.1","public_ipv4":null,"region":"us-east-1"},'
    b'{"az":"us-west-2b","instance_id":"i-0123456789abcdef1","ipv6":["2600::1"],"name":"web",'
    b'"private_ipv4":"10.1.0.1","public_ipv4":"54.0.0.1","region":"us-west-2"}],'
    b'"regions":["eu-west-1","us-east-1","us-west-2"],'
    b'"rejected":[{"instance_id":"i-0123456789abcdef3","reason":"name \'w\\u00e9b\' is bad",'
    b'"region":"us-east-1","value":"w\\u00e9b\\n$(x)"}],'
    b'"schema":1,"serial":7,"tag_key":"dns"}\n'
)


def test_canonical_bytes_exact() -> None:
    assert _document([WEB_B, API, WEB_A], [BAD]).to_bytes() == EXPECTED_BYTES


@pytest.mark.parametrize(
    "order",
    [[WEB_A, WEB_B, API], [API, WEB_B, WEB_A], [WEB_B, WEB_A, API]],
    ids=["abc", "cba", "bac"],
)
def test_canonical_bytes_ignore_input_order(order: list[HostEntry]) -> None:
    data = _document(order, [BAD, BAD]).to_bytes()
    assert data == EXPECTED_BYTES
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    assert data.isascii()


def test_parse_exact_document() -> None:
    document = parse_document(EXPECTED_BYTES)
    assert document.serial == 7
    assert document.regions == ("eu-west-1", "us-east-1", "us-west-2")
    assert document.hosts == (API, WEB_A, WEB_B)
    assert document.rejected == (BAD,)
    assert document.names() == frozenset({"api", "web"})


def test_parse_canonicalises_addresses() -> None:
    raw = json.loads(EXPECTED_BYTES)
    raw["hosts"][2]["ipv6"] = ["2600:0:0::0002", "2600::1", "2600::0001"]
    assert parse_document(json.dumps(raw).encode()).hosts[2].ipv6 == ("2600::1", "2600::2")


def test_same_content_ignores_serial_and_time() -> None:
    first = _document([WEB_A])
    later = make_document(
        serial=8,
        generated_at="2024-05-02T00:00:00Z",
        tag_key="dns",
        regions=first.regions,
        hosts=[WEB_A],
    )
    assert first.same_content(later)
    assert not first.same_content(_document([WEB_A, API]))
    assert not first.same_content(_document([WEB_A], [BAD]))


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=UTC), "2024-05-01T12:00:00Z"),
        (
            datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-01T12:00:00Z",
        ),
    ],
    ids=["drops-microseconds", "converts-to-utc"],
)
def test_format_timestamp(moment: datetime, expected: str) -> None:
    assert format_timestamp(moment) == expected


@settings(max_examples=40, deadline=None)
@given(document=documents())
def test_round_trip(document: MappingDocument) -> None:
    data = document.to_bytes()
    assert data.isascii()
    assert data.endswith(b"\n")
    parsed = parse_document(data)
    assert parsed == document
    assert parsed.to_bytes() == data


@settings(max_examples=20, deadline=None)
@given(document=documents(), seed=st.randoms(use_true_random=False))
def test_bytes_do_not_depend_on_order(document: MappingDocument, seed: Any) -> None:
    hosts, rejected = list(document.hosts), list(document.rejected)
    seed.shuffle(hosts)
    seed.shuffle(rejected)
    shuffled = make_document(
        serial=document.serial,
        generated_at=document.generated_at,
        tag_key=document.tag_key,
        regions=reversed(document.regions),
        hosts=hosts,
        rejected=rejected,
    )
    assert shuffled.to_bytes() == document.to_bytes()


# --- bad documents: each error names the field at fault --------------------------------

Mutation = Callable[[dict[str, Any]], object]


def _set(path: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> object:
        target: Any = doc
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
        return doc

    return mutate


def _delete(key: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> object:
        del doc[key]
        return doc

    return mutate


def _duplicate_host(doc: dict[str, Any]) -> object:
    doc["hosts"].append(copy.deepcopy(doc["hosts"][0]))
    return doc


BASE: dict[str, Any] = json.loads(EXPECTED_BYTES)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: [d], "document: expected a JSON object, got list"),
        (lambda d: "x", "document: expected a JSON object, got str"),
        (_delete("hosts"), "document: missing field 'hosts'"),
        (_set("extra", 1), "document: unknown field 'extra'"),
        (_set("schema", 2), "schema: expected 1, got 2"),
        (_set("schema", True), "schema: expected 1, got True"),
        (_set("schema", 1.0), "schema: expected 1, got 1.0"),
        (_set("schema", "1"), "schema: expected 1, got '1'"),
        (_set("serial", -1), "serial: expected an integer from 0 to 9007199254740991 (2^53"),
        (_set("serial", "1"), "serial: expected an integer from 0 to 9007199254740991 (2^53"),
        (_set("serial", True), "serial: expected an integer from 0 to 9007199254740991 (2^53"),
        (_set("serial", 1.5), "serial: expected an integer from 0 to 9007199254740991 (2^53"),
        (_set("serial", 2**53), "serial: expected an integer from 0 to 9007199254740991 (2^53"),
        (_set("serial", 10**400), "serial: expected an integer from 0 to 9007199254740991 (2^53"),
        (_set("generated_at", "yesterday"), "generated_at: 'yesterday' is not an RFC 3339"),
        (_set("generated_at", 0), "generated_at: expected an RFC 3339 time string"),
        (_set("generated_at", "2024-05-01T12:00:00"), "generated_at: '2024-05-01T12:00:00'"),
        (_set("generated_at", "2024-05-01"), "generated_at: '2024-05-01'"),
        (_set("generated_at", "20240501T120000Z"), "generated_at: '20240501T120000Z'"),
        (_set("generated_at", "2024-W18-3T12:00:00Z"), "generated_at: '2024-W18-3T12:00:00Z'"),
        (_set("generated_at", "2024-05-01T12:00:00+02:00"), "generated_at: '2024-05-01T12:00:00"),
        (_set("generated_at", "2024-13-01T12:00:00Z"), "generated_at: '2024-13-01T12:00:00Z'"),
        (_set("tag_key", ""), "tag_key: expected a string of 1 to 128 characters"),
        (_set("tag_key", "k" * 129), "tag_key: expected a string of 1 to 128 characters"),
        (_set("regions", "us-east-1"), "regions: expected a list, got str"),
        (_set("regions.0", "US-EAST-1"), "regions[0]: 'US-EAST-1' is not a region name"),
        (_set("regions.0", "us-east-\u0661"), "regions[0]: 'us-east-\u0661' is not a region"),
        (_set("regions.0", "us-east-1\n"), "regions[0]: 'us-east-1\\n' is not a region name"),
        (_set("regions.0", "us-east-1"), "regions: a region is listed twice"),
        (_set("hosts", {}), "hosts: expected a list, got dict"),
        (_set("hosts.0", []), "hosts[0]: expected a JSON object, got list"),
        (_set("hosts.0.color", "red"), "hosts[0]: unknown field 'color'"),
        (_set("hosts.0.region", "eu-central-1"), "hosts[0].region: 'eu-central-1' is not among"),
        (_set("hosts.0.region", "moon-1"), "hosts[0].region: 'moon-1' is not a region name"),
        (_set("hosts.0.instance_id", "i-XYZ"), "hosts[0].instance_id: 'i-XYZ' is not an instance"),
        (_set("hosts.0.instance_id", None), "hosts[0].instance_id: None is not an instance id"),
        (_set("hosts.0.az", "us-east-1"), "hosts[0].az: 'us-east-1' is not an availability"),
        (_set("hosts.0.private_ipv4", "10.0.0.256"), "hosts[0].private_ipv4: '10.0.0.256' is"),
        (_set("hosts.0.private_ipv4", "010.0.0.1"), "hosts[0].private_ipv4: '010.0.0.1' is"),
        (_set("hosts.0.private_ipv4", None), "hosts[0].private_ipv4: expected an IPv4"),
        (_set("hosts.0.private_ipv4", "::1"), "hosts[0].private_ipv4: '::1' is not an IPv4"),
        (_set("hosts.0.public_ipv4", "1.2.3"), "hosts[0].public_ipv4: '1.2.3' is not an IPv4"),
        (_set("hosts.0.ipv6", "2600::1"), "hosts[0].ipv6: expected a list, got str"),
        (_set("hosts.0.ipv6", ["10.0.0.1"]), "hosts[0].ipv6[0]: '10.0.0.1' is not an IPv6"),
        (
            _set("hosts.0.ipv6", ["fe80::1%eth0\n1.2.3.4 evil"]),
            "hosts[0].ipv6[0]: 'fe80::1%eth0\\n1.2.3.4 evil' is not an IPv6",
        ),
        (_set("hosts.0.ipv6", ["fe80::1%eth0"]), "hosts[0].ipv6[0]: 'fe80::1%eth0' is not"),
        (_set("hosts.0.name", "API"), "hosts[0].name: 'API' is not in normal form"),
        (_set("hosts.0.name", " api"), "hosts[0].name: ' api' is not in normal form"),
        (_set("hosts.0.name", 5), "hosts[0].name: expected a string"),
        (_set("hosts.0.name", "a;reboot"), "hosts[0].name: 'a;reboot' has characters other"),
        (_set("hosts.0.name", "x\n1.2.3.4 y"), "hosts[0].name: 'x\\n1.2.3.4 y' has characters"),
        (_set("hosts.0.name", "localhost"), "hosts[0].name: 'localhost' ends in the reserved"),
        (_set("hosts.0.name", "a.ec2.internal"), "hosts[0].name: 'a.ec2.internal' would shadow"),
        (_duplicate_host, "hosts[3]: name 'api' listed twice for i-0123456789abcdef2"),
        (_set("rejected", None), "rejected: expected a list, got NoneType"),
        (_set("rejected.0.value", 1), "rejected[0].value: expected a string"),
        (_set("rejected.0.value", "v" * 513), "rejected[0].value: expected a string"),
        (_set("rejected.0.reason", None), "rejected[0].reason: expected a string"),
        (_set("rejected.0.region", ""), "rejected[0].region: '' is not a region name"),
        (_set("rejected.0.instance_id", "i-1"), "rejected[0].instance_id: 'i-1' is not"),
        (_delete("rejected"), "document: missing field 'rejected'"),
    ],
    ids=[
        "list-not-object",
        "string-not-object",
        "missing-field",
        "unknown-field",
        "schema-2",
        "schema-true",
        "schema-float",
        "schema-string",
        "serial-negative",
        "serial-string",
        "serial-true",
        "serial-float",
        "serial-above-2^53-1",
        "serial-of-401-digits",
        "time-word",
        "time-number",
        "time-naive",
        "time-date-only",
        "time-basic-format",
        "time-week-date",
        "time-not-utc",
        "time-month-13",
        "tag-key-empty",
        "tag-key-long",
        "regions-string",
        "region-uppercase",
        "region-arabic-digit",
        "region-newline",
        "region-twice",
        "hosts-object",
        "host-list",
        "host-unknown-field",
        "host-region-not-scanned",
        "host-region-bad",
        "instance-id-bad",
        "instance-id-null",
        "az-bad",
        "private-ip-bad",
        "private-ip-leading-zero",
        "private-ip-null",
        "private-ip-v6",
        "public-ip-bad",
        "ipv6-string",
        "ipv6-v4",
        "ipv6-scope-injection",
        "ipv6-scope",
        "name-uppercase",
        "name-space",
        "name-number",
        "name-hostile",
        "name-newline",
        "name-localhost",
        "name-aws",
        "duplicate-host",
        "rejected-null",
        "rejected-value-number",
        "rejected-value-long",
        "rejected-reason-null",
        "rejected-region",
        "rejected-instance",
        "rejected-missing",
    ],
)
def test_bad_documents_name_the_field(mutate: Mutation, message: str) -> None:
    data = json.dumps(mutate(copy.deepcopy(BASE))).encode()
    with pytest.raises(DocumentError) as caught:
        parse_document(data)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "document is not valid JSON: Expecting value at line 1 column 1"),
        (b"{", "document is not valid JSON"),
        (b"\xff\xfe{}", "document is not UTF-8 (byte 0)"),
        (b'{"a": "\xc3"}', "document is not UTF-8 (byte 7)"),
        (b"\xef\xbb\xbf{}", "document is not valid JSON: Unexpected UTF-8 BOM"),
        (b"[" * 100_000 + b"]" * 100_000, "document is not valid JSON: nested too deeply"),
        (b'{"serial": ' + b"9" * 5000 + b"}", "document is not valid JSON"),
        (b"NaN", "document: expected a JSON object, got float"),
        (b"null", "document: expected a JSON object, got NoneType"),
        (b"{}", "document: missing field 'generated_at'"),
    ],
    ids=[
        "empty",
        "truncated",
        "utf16-bom",
        "truncated-utf8",
        "utf8-bom",
        "nested-100000",
        "huge-integer",
        "nan",
        "null",
        "empty-object",
    ],
)
def test_undecodable_documents(data: bytes, message: str) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_document(data)
    assert str(caught.value).startswith(message)


def test_local_zone_az_is_accepted() -> None:
    raw = copy.deepcopy(BASE)
    raw["hosts"][0]["az"] = "us-east-1-bos-1a"
    raw["hosts"][1]["az"] = "us-east-1-wl1-bos-wlz-1"
    document = parse_document(json.dumps(raw).encode())
    assert [h.az for h in document.hosts] == [
        "us-east-1-bos-1a",
        "us-east-1-wl1-bos-wlz-1",
        "us-west-2b",
    ]


@pytest.mark.parametrize(
    "generated_at",
    ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.5Z", "2024-05-01T12:00:00+00:00"],
    ids=["z", "fraction", "zero-offset"],
)
def test_rfc3339_utc_times_are_accepted(generated_at: str) -> None:
    raw = copy.deepcopy(BASE)
    raw["generated_at"] = generated_at
    assert parse_document(json.dumps(raw).encode()).generated_at == generated_at


def _outcome(data: bytes) -> None:
    try:
        result = parse_document(data)
    except DocumentError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(result, MappingDocument)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_document_error(data: bytes) -> None:
    _outcome(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["us-east-1", "i-0123456789abcdef0", "10.0.0.1", "::1", "web", "Web"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    raw: Any = json.loads(draw(documents()).to_bytes())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target: Any = raw
        while isinstance(target, (dict, list)) and target and draw(st.booleans()):
            key = draw(
                st.sampled_from(sorted(target) if isinstance(target, dict) else range(len(target)))
            )
            if not isinstance(target[key], (dict, list)) or not target[key]:
                break
            target = target[key]
        if isinstance(target, dict) and target:
            key = draw(st.sampled_from(sorted(target)))
            if draw(st.booleans()):
                target[key] = draw(json_values)
            else:
                del target[key]
        elif isinstance(target, list) and target:
            target[draw(st.integers(0, len(target) - 1))] = draw(json_values)
    text = json.dumps(raw, sort_keys=True)
    if draw(st.booleans()) and text:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=3)) + text[cut:]
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=60, deadline=None)
@given(data=mutated_documents())
def test_mutated_documents_parse_or_document_error(data: bytes) -> None:
    _outcome(data)


@settings(max_examples=100, deadline=None)
@given(document=documents())
def test_decoding_cuts_a_canonical_document_into_its_entries(document: MappingDocument) -> None:
    data = document.to_bytes()
    decoded = decode_document(data)
    assert decoded.raw == json.loads(data)
    texts = [
        json.dumps(host.to_json(), sort_keys=True, separators=(",", ":"))[1:-1].encode()
        for host in document.hosts
    ]
    if not texts:
        assert decoded.hosts_span is None
        return
    assert decoded.hosts_span is not None
    start, end = decoded.hosts_span
    assert data[start:end].split(b"},{") == texts


@settings(max_examples=200, deadline=None)
@given(
    document=documents(),
    at=st.integers(min_value=0),
    token=st.sampled_from(["},{", " ", '"hosts":[]', "}]", "\\u0041", "{", '"']),
)
def test_decoding_any_bytes_reads_what_json_reads(
    document: MappingDocument, at: int, token: str
) -> None:
    """Mutated layouts: the same value (or error) as ``json.loads``, and texts only when exact."""
    text = document.to_bytes().decode()
    at %= len(text)
    data = (text[:at] + token + text[at:]).encode()
    try:
        expected = json.loads(data)
    except ValueError:
        with pytest.raises(DocumentError, match="not valid JSON"):
            decode_document(data)
        return
    decoded = decode_document(data)
    assert decoded.raw == expected
    if decoded.hosts_span is not None:
        start, end = decoded.hosts_span
        entries = [json.loads(b"{" + t + b"}") for t in data[start:end].split(b"},{")]
        assert entries == expected["hosts"]


def test_other_layouts_are_decoded_without_entry_texts() -> None:
    data = make_document(
        serial=1, generated_at="2026-01-01T00:00:00Z", tag_key="dns", regions=["us-east-1"],
        hosts=[WEB_A, API],
    ).to_bytes()  # fmt: skip
    pretty = json.dumps(json.loads(data), indent=2).encode()
    assert decode_document(pretty).raw == json.loads(data)
    assert decode_document(pretty).hosts_span is None
    assert decode_document(data).hosts_span is not None


def test_entry_texts_are_not_cut_inside_strings() -> None:
    """A ``},{`` inside a string and a spaced boundary elsewhere keep the count right:
    the texts must still not be cut there (validation, which would refuse the
    string, comes after decoding)."""
    data = make_document(
        serial=1, generated_at="2026-01-01T00:00:00Z", tag_key="dns", regions=["us-east-1"],
        hosts=[WEB_A, API, WEB_B._replace(az="us-west-2b},{x")],
    ).to_bytes()  # fmt: skip
    spaced = data.replace(b"},{", b"}, {", 1)
    decoded = decode_document(spaced)
    assert decoded.raw == json.loads(spaced)
    assert decoded.hosts_span is None


@pytest.mark.parametrize(
    ("second", "key"),
    [
        (b'"hosts":[]', "hosts"),
        (b'"host\\u0073":[]', "hosts"),
        (b'"hosts" :[]', "hosts"),
        (b'"serial":1', "serial"),
    ],
    ids=["hosts", "hosts-escaped", "hosts-spaced", "serial"],
)
def test_a_key_named_twice_is_refused_not_read_as_json_happens_to(second: bytes, key: str) -> None:
    """Parsers disagree about a repeated key (first wins, last wins, error): a
    document that reads one way here and another way in a reviewer's tool is refused."""
    data = make_document(
        serial=7, generated_at="2026-01-01T00:00:00Z", tag_key="dns", regions=["us-east-1"],
        hosts=[WEB_A],
    ).to_bytes()  # fmt: skip
    twice = data.replace(b',"tag_key"', b"," + second + b',"tag_key"')
    message = f"document is not valid: an object names the key {key!r} twice"
    for read in (decode_document, parse_document):
        with pytest.raises(DocumentError) as caught:
            read(twice)
        assert str(caught.value) == message


def test_a_key_named_twice_in_a_host_entry_is_refused() -> None:
    data = make_document(
        serial=7, generated_at="2026-01-01T00:00:00Z", tag_key="dns", regions=["us-east-1"],
        hosts=[WEB_A],
    ).to_bytes()  # fmt: skip
    twice = data.replace(b'"name":"web"', b'"name":"web","name":"evil"', 1)
    assert twice != data
    with pytest.raises(DocumentError, match="names the key 'name' twice"):
        parse_document(twice)


def test_a_value_that_reads_hosts_is_no_second_key() -> None:
    data = make_document(
        serial=1, generated_at="2026-01-01T00:00:00Z", tag_key="hosts", regions=["us-east-1"],
        hosts=[WEB_A],
    ).to_bytes()  # fmt: skip
    assert decode_document(data).hosts_span is not None


def test_a_serial_of_hundreds_of_digits_is_refused_in_one_short_line() -> None:
    """A serial above 2^53 - 1 broke the metrics (a float64 gauge) of every agent that
    took it, and the last-known-good copy kept it across restarts."""
    data = json.dumps(BASE | {"serial": 10**400}).encode()
    with pytest.raises(DocumentError) as caught:
        parse_document(data)
    assert str(caught.value).endswith("got 10000000000000000000... (401 characters)")
