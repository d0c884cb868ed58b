"""The mapping document (schema 1): model, canonical bytes and validation.

The document is the only thing that travels from the publisher to the nodes, so
it is validated field by field on both sides and serialised canonically: the same
fleet always gives the same bytes, hence the same ETag and no needless PUT.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple

from resolver.core.addresses import (
    CANONICAL_IPV4,
    address_sort_key,
    canonical_ipv4,
    canonical_ipv6,
)
from resolver.core.names import is_plain_name, validate_name
from resolver.errors import DocumentError, InvalidName

SCHEMA_VERSION = 1
MAX_SERIAL = 2**53 - 1
"""The largest serial: the largest integer every JSON reader holds exactly (RFC 7493
2.2). A serial reads the same here, in jq, and in Prometheus, whose samples are
float64: a larger one broke the agent's metrics, and then every restart (the
last-known-good copy kept it), with no lower serial allowed to replace it."""

REGION_TEXT = r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}"
REGION_PATTERN = re.compile(REGION_TEXT + r"\Z")
INSTANCE_ID_TEXT = r"i-[0-9a-f]{8,17}"
INSTANCE_ID_PATTERN = re.compile(INSTANCE_ID_TEXT + r"\Z")
# us-east-1a; Local Zones us-west-2-lax-1a; Wavelength Zones us-east-1-wl1-bos-wlz-1.
AZ_TEXT = rf"{REGION_TEXT}(?:[a-z]|(?:-[a-z0-9]+)+)"
AZ_PATTERN = re.compile(AZ_TEXT + r"\Z")
# RFC 3339 in UTC: 2024-05-01T12:00:00Z, optional fraction, Z or +00:00.
_UTC_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|\+00:00)\Z"
)
_TAG_KEY_MAX = 128
_REJECTED_VALUE_MAX = 512

_DOCUMENT_FIELDS = frozenset(
    {"schema", "serial", "generated_at", "tag_key", "regions", "hosts", "rejected"}
)
_HOST_FIELDS = frozenset(
    {"name", "region", "instance_id", "az", "private_ipv4", "public_ipv4", "ipv6"}
)
_REJECTED_FIELDS = frozenset({"region", "instance_id", "value", "reason"})


class HostEntry(NamedTuple):
    """One (name, instance) pair; the unit the views are built from.

    A named tuple rather than a frozen dataclass: an agent builds 100,000 of these
    on every reload, and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) cost five times as much. Tuple order is
    the document's canonical order: name, region, instance.
    """

    name: str
    region: str
    instance_id: str
    az: str
    private_ipv4: str
    public_ipv4: str | None
    ipv6: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "region": self.region,
            "instance_id": self.instance_id,
            "az": self.az,
            "private_ipv4": self.private_ipv4,
            "public_ipv4": self.public_ipv4,
            "ipv6": list(self.ipv6),
        }


_CANONICAL_ORDER = itemgetter(0, 1, 2)
"""Name, region, instance: unique per host, so later fields (some None) are never compared."""


@dataclass(frozen=True, order=True, slots=True)
class Rejection:
    """A tag value (or part of one) that failed validation, kept for operators to see."""

    region: str
    instance_id: str
    value: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "instance_id": self.instance_id,
            "value": self.value,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class MappingDocument:
    """A whole fleet's names. Build with ``make_document`` to get canonical order."""

    serial: int
    generated_at: str
    tag_key: str
    regions: tuple[str, ...]
    hosts: tuple[HostEntry, ...]
    rejected: tuple[Rejection, ...] = ()
    schema: int = field(default=SCHEMA_VERSION)

    def names(self) -> frozenset[str]:
        return frozenset(host.name for host in self.hosts)

    def same_content(self, other: MappingDocument) -> bool:
        """True when only serial and generated_at differ: nothing worth publishing."""
        return (
            self.tag_key == other.tag_key
            and self.regions == other.regions
            and self.hosts == other.hosts
            and self.rejected == other.rejected
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "serial": self.serial,
            "generated_at": self.generated_at,
            "tag_key": self.tag_key,
            "regions": list(self.regions),
            "hosts": [host.to_json() for host in self.hosts],
            "rejected": [rejection.to_json() for rejection in self.rejected],
        }

    def to_bytes(self) -> bytes:
        """Canonical bytes: sorted keys, compact, ASCII-escaped, one trailing newline."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return (text + "\n").encode("ascii")


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 UTC with a Z and whole seconds, the only form the document uses."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_document(
    *,
    serial: int,
    generated_at: str,
    tag_key: str,
    regions: Iterable[str],
    hosts: Iterable[HostEntry],
    rejected: Iterable[Rejection] = (),
) -> MappingDocument:
    """Build a document in canonical order (hosts by name, region, instance)."""
    return MappingDocument(
        serial=serial,
        generated_at=generated_at,
        tag_key=tag_key,
        regions=tuple(sorted(set(regions))),
        hosts=tuple(sorted(hosts, key=_CANONICAL_ORDER)),
        rejected=tuple(sorted(set(rejected))),
    )


def parse_document(data: bytes) -> MappingDocument:
    """Parse and fully validate document bytes; errors name the field at fault."""
    return document_from_json(_json_value(_document_text(data)))


def _document_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"document is not UTF-8 (byte {exc.start})") from None


def _json_value(text: str) -> object:
    """The document's JSON value; an object that names a key twice is an error.

    JSON parsers disagree about a repeated key (first wins, last wins, error), so
    a document that means one thing here and another to a reviewer's tool is
    refused rather than read the way Python's ``json`` happens to read it. The
    publisher never repeats a key.
    """
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except _KeyTwice as exc:
        raise DocumentError(f"document is not valid: an object names the key {exc} twice") from None
    except json.JSONDecodeError as exc:
        raise DocumentError(
            f"document is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise DocumentError("document is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise DocumentError(f"document is not valid JSON: {str(exc).split(':')[0]}") from None


@dataclass(frozen=True)
class DecodedDocument:
    """Document bytes decoded from JSON but not validated, and where its entries' texts lie."""

    raw: object
    hosts_span: tuple[int, int] | None
    """Where the entries of ``hosts`` lie in the bytes (inside ``[{`` and ``}]``, so
    ``data[start:end].split(b"},{")`` is each entry's text without its braces); None
    unless the document is laid out as the publisher writes it. Two entries with
    the same text are the same entry, which is what lets a reload skip unchanged
    ones (``resolver.core.delta``)."""


CANONICAL_HEAD = re.compile(rb'\{"generated_at":"[^"\\]*","hosts":(?=\[\{)')
"""The start of a canonical document: its first key, then the hosts list."""
_WHITESPACE = re.compile(r"[ \t\n\r]")


def decode_document(data: bytes) -> DecodedDocument:
    """Decode document bytes, finding a canonical document's entries as a span of them.

    The hosts list is decoded on its own (``raw_decode`` says exactly where it
    ends). Cutting its text at ``},{`` is exact when the list holds no whitespace
    and that gives one piece per entry: a ``},{`` inside a string would add a
    piece. Only ASCII documents (as the publisher writes them) get a span, so that
    the text's offsets are the bytes' offsets. Nothing is copied: the span points
    into ``data``. Anything unusual (another layout, a key named twice, bad
    JSON) takes the plain decode, which also words the error.
    """
    text = _document_text(data)
    head = CANONICAL_HEAD.match(data)
    if head is not None and data.isascii():
        start = head.end()
        try:
            hosts, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            pass  # worded below (a key named twice included)
        else:
            rest = _without_hosts(text[:start] + "[]" + text[end:])
            if rest is not None and type(hosts) is list:
                rest["hosts"] = hosts
                return DecodedDocument(rest, _hosts_span(text, start + 2, end - 2, len(hosts)))
    return DecodedDocument(_json_value(text), None)


class _KeyTwice(ValueError):
    """An object names a key twice; its text is the key, quoted."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for every decode of document text: an object naming a
    key twice raises (a ValueError), whichever path reads it."""
    decoded = dict(pairs)
    if len(decoded) != len(pairs):
        keys = [key for key, _value in pairs]
        raise _KeyTwice(repr(next(key for key in keys if keys.count(key) > 1)))
    return decoded


_DECODER = json.JSONDecoder(object_pairs_hook=unique_keys)


def _without_hosts(text: str | bytes) -> dict[str, Any] | None:
    """A document's JSON whose hosts list was replaced by ``[]``, decoded; None unless
    it is an object and no object in it names a key twice.

    The list was taken out to be read apart, so a second ``hosts`` key (spelt
    ``"host\\u0073"`` even) must not be there to win over it, as JSON's last key
    does; the publisher never writes a key twice. What is left is small: the
    hook that sees each object's keys costs nothing that matters.
    """
    try:
        rest = json.loads(text, object_pairs_hook=unique_keys)
    except (ValueError, RecursionError):
        return None
    return rest if type(rest) is dict else None


def _hosts_span(text: str, start: int, end: int, count: int) -> tuple[int, int] | None:
    """``(start, end)`` if cutting the entries there at ``},{`` gives exactly the entries."""
    if text[end : end + 2] != "}]" or _WHITESPACE.search(text, start, end):
        return None
    return (start, end) if text.count("},{", start, end) + 1 == count else None


CANONICAL_HOSTS_END = b'}],"regions":['
"""What follows the last host entry of a canonical document."""


def canonical_header(data: bytes, hosts_start: int, hosts_end: int) -> MappingDocument | None:
    """The document without its hosts, validated, when ``data[hosts_start:hosts_end]``
    is its hosts list; None when the rest does not decode and validate (the full
    parse then words why) or names a key twice (see ``_without_hosts``).

    For readers that take the entries apart themselves (``canonical_reader``,
    ``delta``): the list is replaced by ``[]``, so the decode is of a few hundred bytes.
    """
    header = _without_hosts(data[:hosts_start] + b"[]" + data[hosts_end:])
    if header is None:
        return None
    try:
        return document_from_json(header)
    except DocumentError:
        return None


def _shown(value: object) -> str:
    """``repr`` of a refused value, cut to one readable line."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def document_from_json(raw: object) -> MappingDocument:
    """Validate an already decoded JSON value as a schema 1 document."""
    obj = _expect_object(raw, "document", _DOCUMENT_FIELDS)
    schema = obj["schema"]
    if type(schema) is not int or schema != SCHEMA_VERSION:
        raise DocumentError(f"schema: expected {SCHEMA_VERSION}, got {schema!r}")
    serial = obj["serial"]
    if not isinstance(serial, int) or isinstance(serial, bool) or not 0 <= serial <= MAX_SERIAL:
        raise DocumentError(
            f"serial: expected an integer from 0 to {MAX_SERIAL} (2^53 - 1), got {_shown(serial)}"
        )
    generated_at = _timestamp(obj["generated_at"], "generated_at")
    tag_key = obj["tag_key"]
    if not isinstance(tag_key, str) or not 0 < len(tag_key) <= _TAG_KEY_MAX:
        raise DocumentError(f"tag_key: expected a string of 1 to {_TAG_KEY_MAX} characters")
    regions = _regions(obj["regions"])
    hosts = _hosts(obj["hosts"], {region: region for region in regions})
    rejected = _rejected(obj["rejected"])
    return make_document(
        serial=serial,
        generated_at=generated_at,
        tag_key=tag_key,
        regions=regions,
        hosts=hosts,
        rejected=rejected,
    )


def _expect_object(raw: object, where: str, fields: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise DocumentError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise DocumentError(f"{where}: unknown field {unknown[0]!r}")
    missing = sorted(fields - set(raw))
    if missing:
        raise DocumentError(f"{where}: missing field {missing[0]!r}")
    return raw


def _expect_list(raw: object, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise DocumentError(f"{where}: expected a list, got {type(raw).__name__}")
    return raw


def _timestamp(raw: object, where: str) -> str:
    if not isinstance(raw, str):
        raise DocumentError(f"{where}: expected an RFC 3339 time string")
    if not _UTC_TIME.match(raw):
        raise DocumentError(f"{where}: {raw!r} is not an RFC 3339 UTC time")
    try:
        datetime.fromisoformat(raw)
    except ValueError:
        raise DocumentError(f"{where}: {raw!r} is not an RFC 3339 UTC time") from None
    return raw


def _region(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not REGION_PATTERN.match(raw):
        raise DocumentError(f"{where}: {raw!r} is not a region name")
    return raw


def _regions(raw: object) -> list[str]:
    regions = [
        _region(item, f"regions[{i}]") for i, item in enumerate(_expect_list(raw, "regions"))
    ]
    if len(set(regions)) != len(regions):
        raise DocumentError("regions: a region is listed twice")
    return regions


def host_entries(raw: object, regions: Iterable[str]) -> list[HostEntry]:
    """Validate a list of raw host entries on their own (a reload's changed entries)."""
    return _hosts(raw, {region: region for region in regions})


def _hosts(raw: object, regions: dict[str, str]) -> list[HostEntry]:
    """Every host entry; region and AZ strings are shared (one object per distinct value).

    The JSON decoder makes a new string for every occurrence; with 100,000 hosts
    in a handful of zones, sharing them saves megabytes for the life of the zone.
    """
    hosts: list[HostEntry] = []
    append = hosts.append
    seen: set[tuple[str, str]] = set()
    remember = seen.add
    shared: dict[str, str] = {}
    for i, item in enumerate(_expect_list(raw, "hosts")):
        try:
            host = _host(item, regions, shared)
        except _BadField as bad:
            raise DocumentError(f"hosts[{i}]{bad.field}: {bad}") from None
        key = (host[0], host[2])  # name and instance
        if key in seen:
            raise DocumentError(
                f"hosts[{i}]: name {host.name!r} listed twice for {host.instance_id}"
            )
        remember(key)
        append(host)
    return hosts


class _BadField(ValueError):
    """A field of one host entry is wrong; ``_hosts`` adds which entry.

    Building ``hosts[12345].private_ipv4`` for every field of every host costs
    more than validating it, so the location is only spelled out on failure.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


_HOST_VALUES = itemgetter(
    "name", "region", "instance_id", "az", "private_ipv4", "public_ipv4", "ipv6"
)


def _host(item: object, regions: dict[str, str], shared: dict[str, str]) -> HostEntry:
    """One validated host entry; each check is the cheap test first, the explanation after.

    ``shared`` maps each availability zone already validated to one string object.
    """
    try:
        # Seven keys, all seven expected ones among them: exactly the fields, nothing else.
        if type(item) is not dict or len(item) != len(_HOST_FIELDS):
            raise KeyError
        values = _HOST_VALUES(item)
    except KeyError:
        try:
            _expect_object(item, "", _HOST_FIELDS)
        except DocumentError as exc:
            raise _BadField("", str(exc).removeprefix(": ")) from None
        raise  # pragma: no cover - _expect_object refuses whatever _HOST_VALUES did
    name, region_raw, instance_id, az_raw, private_raw, public_raw, ipv6_raw = values
    if type(name) is not str or not is_plain_name(name):
        _explain_name(name)
    region = regions.get(region_raw) if type(region_raw) is str else None
    if region is None:
        _region_or_bad(region_raw)
        raise _BadField(".region", f"{region_raw!r} is not among the scanned regions")
    if type(instance_id) is not str or not INSTANCE_ID_PATTERN.match(instance_id):
        raise _BadField(".instance_id", f"{instance_id!r} is not an instance id")
    az = shared.get(az_raw) if type(az_raw) is str else None
    if az is None:
        if not isinstance(az_raw, str) or not AZ_PATTERN.match(az_raw):
            raise _BadField(".az", f"{az_raw!r} is not an availability zone")
        az = shared[az_raw] = az_raw
    private_ipv4 = private_raw
    if type(private_raw) is not str or not CANONICAL_IPV4.match(private_raw):
        private_ipv4 = _ipv4(private_raw, ".private_ipv4")
    public_ipv4 = public_raw
    if public_raw is not None and (
        type(public_raw) is not str or not CANONICAL_IPV4.match(public_raw)
    ):
        public_ipv4 = _ipv4(public_raw, ".public_ipv4")
    if type(ipv6_raw) is not list:
        raise _BadField(".ipv6", f"expected a list, got {type(ipv6_raw).__name__}")
    ipv6 = ipv6_list(ipv6_raw) if ipv6_raw else ()
    return HostEntry(name, region, instance_id, az, private_ipv4, public_ipv4, ipv6)


def _explain_name(name: object) -> None:
    """Raise the reason a name is not a valid name in normal form (if it is, return)."""
    if not isinstance(name, str):
        raise _BadField(".name", "expected a string")
    try:
        normal = validate_name(name)
    except InvalidName as exc:
        raise _BadField(".name", f"{name!r} {exc}") from None
    if normal != name:
        raise _BadField(".name", f"{name!r} is not in normal form")


def ipv6_list(raw: Sequence[object]) -> tuple[str, ...]:
    """A host's IPv6 addresses in canonical form and order; raises ValueError naming the item."""
    addresses = []
    for j, address in enumerate(raw):
        try:
            addresses.append(canonical_ipv6(address, ""))
        except DocumentError as exc:
            raise _BadField(f".ipv6[{j}]", str(exc).removeprefix(": ")) from None
    if len(addresses) == 1:
        return (addresses[0],)
    return tuple(sorted(set(addresses), key=address_sort_key))


def _region_or_bad(raw: object) -> None:
    try:
        _region(raw, "")
    except DocumentError as exc:
        raise _BadField(".region", str(exc).removeprefix(": ")) from None


def _ipv4(value: object, field: str) -> str:
    if type(value) is str and CANONICAL_IPV4.match(value):
        return value
    try:
        return canonical_ipv4(value, "")
    except DocumentError as exc:
        raise _BadField(field, str(exc).removeprefix(": ")) from None


def _rejected(raw: object) -> list[Rejection]:
    rejected: list[Rejection] = []
    for i, item in enumerate(_expect_list(raw, "rejected")):
        where = f"rejected[{i}]"
        obj = _expect_object(item, where, _REJECTED_FIELDS)
        region = _region(obj["region"], f"{where}.region")
        instance_id = obj["instance_id"]
        if not isinstance(instance_id, str) or not INSTANCE_ID_PATTERN.match(instance_id):
            raise DocumentError(f"{where}.instance_id: {instance_id!r} is not an instance id")
        value, reason = obj["value"], obj["reason"]
        if not isinstance(value, str) or len(value) > _REJECTED_VALUE_MAX:
            raise DocumentError(f"{where}.value: expected a string")
        if not isinstance(reason, str):
            raise DocumentError(f"{where}.reason: expected a string")
        rejected.append(Rejection(region, instance_id, value, reason))
    return rejected
