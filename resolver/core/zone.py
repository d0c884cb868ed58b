"""Compiling a view into precompiled replies keyed by the raw question.

The agent answers an owned name by gluing four byte strings: the client's ID,
a prepared header, the client's own question (so its letter case is echoed) and a
prepared body whose names point back at the question by compression. Everything
that does not depend on the client is computed here, once per document, off the
serving path; the result is immutable and swapped in whole.

A reload recompiles every name, so the loop below is written for 100,000 of
them: one pass per record, wire forms built from small lookup tables rather
than general encoders, and one shared reply object wherever two keys answer
alike. The compile first writes a ``ZoneImage`` (a few large buffers) and only
then the dictionary: built while the parsed document is still alive, the
dictionary's 300,000 small keys would fill the holes the parser leaves, and
freeing the document afterwards would give almost nothing back to the system
(120 MB kept against 74 MB, measured on 100,000 names). The pipeline drops the
document between the two steps.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain, compress, pairwise, repeat
from operator import ne
from typing import TypeAlias

from resolver.core import wire
from resolver.core.addresses import ipv6_packed
from resolver.core.views import View, ViewRecord

SOA_QUESTION_SUFFIX = struct.pack("!HH", wire.TYPE_SOA, wire.CLASS_IN)
_A_IN = struct.pack("!HH", wire.TYPE_A, wire.CLASS_IN)
_AAAA_IN = struct.pack("!HH", wire.TYPE_AAAA, wire.CLASS_IN)
_PTR_IN = struct.pack("!HH", wire.TYPE_PTR, wire.CLASS_IN)
_OCTET_BYTE = {str(value): bytes((value,)) for value in range(256)}
"""Dotted-quad text of one octet to its byte: four lookups beat ``int`` four times."""
_OCTET_LABEL = {str(value): wire.encode_name(str(value))[:-1] for value in range(256)}
"""The same text as a reverse-name label (length byte and digits)."""
_IN_ADDR_ARPA = wire.encode_name("in-addr.arpa")
_LENGTH_BYTE = [bytes((length,)) for length in range(256)]
_U16 = [struct.pack("!H", length) for length in range(wire.MAX_NAME + 1)]
"""RDLENGTH of a PTR record by target length (a name is at most 255 octets)."""
_IP6_ARPA = wire.encode_name("ip6.arpa")
KEY_END = b"\xff"
"""Ends each key in ``ZoneImage.keys``. No key holds that byte (names are ASCII, labels
at most 63 octets, and the types and class stored, A, AAAA, PTR, SOA and IN, are below
255), so one ``split`` cuts all the keys; ``materialize`` checks their count."""

Heads: TypeAlias = tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes]
"""Flags and counts after the ID, by ``head_index``: the client's CD and RD bits are
copied into the reply, and the EDNS variant sets ARCOUNT."""


def head_index(cd: int, rd: int, edns: int) -> int:
    """Where ``Heads`` keeps the header for a query with these bits (each 0 or 1).

    The fast path computes the same from the query's flag bytes directly.
    """
    return cd << 2 | rd << 1 | edns


@dataclass(frozen=True, slots=True)
class Prepared:
    """A reply minus the client's ID and question.

    ``heads`` holds flags and counts, indexed by ``head_index``; ``body`` holds
    the sections after the question. Our OPT record, when the client used EDNS,
    is appended at reply time (``wire.OPT_BY_VARIANT``): storing three variants
    of every body would triple the zone's largest part for one concatenation.
    """

    heads: Heads
    body: bytes


Answer: TypeAlias = "bytes | Prepared"
"""What ``answers`` holds: most replies carry one record, and for those the value is
the body alone (the heads are the zone's ``one_answer``), which saves an object a name."""


@dataclass(frozen=True)
class CompiledZone:
    """An immutable index from questions to prepared replies for one view.

    Owned names answer NODATA for types they lack. That needs no index of its
    own: a name is owned exactly when it has an A, AAAA or PTR answer (or, in an
    authoritative zone, is the apex or an empty non-terminal), so ``nodata_for``
    asks ``answers``, and a second 100,000-key dict is not kept in memory.
    """

    label: str
    zone: str
    serial: int
    names: int
    zone_wire: bytes
    answers: Mapping[bytes, Answer]
    """Key: lowercased question name wire + type + class."""
    one_answer: Heads
    """The heads of every ``answers`` value that is a bare body."""
    authoritative: bool
    recursion_available: bool
    negative_ttl: int
    soa_rdata: bytes
    nodata_self: Prepared
    """NODATA whose SOA owner is the question name itself (bare and reverse names)."""
    soa_self: Prepared
    """The SOA query's answer for those same names. Their NODATA names each one as the
    apex of its own zone (a bare name has no zone above it), so the SOA it points to
    must exist, as it does with unbound's static local zones."""
    nodata_below_zone: tuple[Prepared, ...]
    """NODATA for ``name.<zone>``, indexed by the name's wire length minus the zone's:
    the SOA owner is the zone apex, a pointer into the question at that offset."""
    structural: Mapping[bytes, Prepared]
    """NODATA for names owned without data: the apex and empty non-terminals."""

    def prepared(self, value: Answer) -> Prepared:
        return value if isinstance(value, Prepared) else Prepared(self.one_answer, value)

    def lookup(self, key: bytes) -> Prepared | None:
        """The prepared reply for a question key, for paths where speed does not matter."""
        value = self.answers.get(key)
        return None if value is None else self.prepared(value)

    def nodata_for(self, name_wire: bytes) -> Prepared | None:
        """The NODATA reply for an owned name (lowercased wire), None if not owned."""
        answers = self.answers
        if name_wire + _A_IN in answers or name_wire + _AAAA_IN in answers:
            # Bare names never end in the zone (the document refuses them), so a
            # forward name that does is a qualified one.
            if name_wire.endswith(self.zone_wire):
                return self.nodata_below_zone[len(name_wire) - len(self.zone_wire)]
            return self.nodata_self
        if name_wire + _PTR_IN in answers:
            return self.nodata_self
        return self.structural.get(name_wire)

    def owns(self, name_wire: bytes) -> bool:
        return self.nodata_for(name_wire) is not None


class OwnedNames:
    """``name_wire in OwnedNames(zone)``: the zone's owned names as a container."""

    def __init__(self, zone: CompiledZone) -> None:
        self._zone = zone

    def __contains__(self, name_wire: object) -> bool:
        return isinstance(name_wire, bytes) and self._zone.owns(name_wire)


@cache
def prepared_heads(rcode: int, an: int, ns: int, *, aa: bool, ra: bool, tc: bool = False) -> Heads:
    """Flags and counts for the eight (CD, RD, EDNS) combinations; cached so zones share
    them. CD is copied as RD is (RFC 4035 3.1.6), so that every reply, owned or
    forwarded, echoes it."""
    flags = wire.FLAG_QR | rcode
    if aa:
        flags |= wire.FLAG_AA
    if ra:
        flags |= wire.FLAG_RA
    if tc:
        flags |= wire.FLAG_TC
    return tuple(  # type: ignore[return-value]
        struct.pack(
            "!HHHHH",
            flags | (wire.FLAG_CD if cd else 0) | (wire.FLAG_RD if rd else 0),
            1,
            an,
            ns,
            edns,
        )
        for cd in (0, 1)
        for rd in (0, 1)
        for edns in (0, 1)
    )


def prepare(rcode: int, answers: list[bytes], authority: list[bytes], *, ra: bool) -> Prepared:
    """A Prepared reply with the given answer and authority sections."""
    return Prepared(
        heads=prepared_heads(rcode, len(answers), len(authority), aa=True, ra=ra),
        body=b"".join(answers) + b"".join(authority),
    )


def ipv4_reverse_wire(address: str) -> bytes:
    """``d.c.b.a.in-addr.arpa`` in wire form, for a canonical dotted quad."""
    a, b, c, d = address.split(".")
    return _OCTET_LABEL[d] + _in_addr_tail(a, b, c)


def _in_addr_tail(a: str, b: str, c: str) -> bytes:
    """``c.b.a.in-addr.arpa`` in wire form: a reverse name after its first label."""
    return _OCTET_LABEL[c] + _OCTET_LABEL[b] + _OCTET_LABEL[a] + _IN_ADDR_ARPA


def ipv6_reverse_wire(packed: bytes) -> bytes:
    """The one-nibble labels under ip6.arpa, in wire form: 32 for 16 address bytes."""
    return ("\x01" + "\x01".join(packed.hex()[::-1])).encode("ascii") + _IP6_ARPA


@dataclass(frozen=True)
class ReplySettings:
    """How replies are built, whatever the names."""

    ttl: int = 30
    negative_ttl: int = 30
    authoritative: bool = False
    recursion_available: bool = False


class ZoneImage:
    """A compiled zone held in a few large buffers, before it becomes a dictionary.

    Keys and bodies are appended to two byte arrays (each key followed by
    ``KEY_END``), the bodies' ends and the links to integer arrays; ``materialize``
    then cuts them into the dictionary in one pass. Large buffers live outside the
    small-object heap, so the parsed document can be freed in between and its
    memory really returned.
    """

    def __init__(self, view: View, settings: ReplySettings) -> None:
        self.label, self.zone, self.serial = view.label, view.zone, view.serial
        self.names = len(view.records)
        self.settings = settings
        self.zone_wire = wire.encode_name(view.zone)
        self.soa = wire.soa_rdata(view.zone, view.serial, settings.negative_ttl)
        self.keys = bytearray()
        """Every key, each followed by ``KEY_END``."""
        self.key_values = array("I")
        """For each key, the index of its value: shared values are stored once."""
        self.bodies = bytearray()
        self.body_ends = array("I")
        self.body_counts = array("H")
        """Records in each body: 1 means the value is the bare body."""
        self.structural: list[bytes] = []
        """Empty non-terminals (authoritative zones only: a few names, not one a record)."""
        self.shared_reverse: set[bytes] = set()
        """Reverse names more than one name claims (the first keeps the PTR): a reload
        that changes one of these names cannot patch the PTR alone (see ``delta``)."""

    def add_value(self, body: bytes, count: int) -> int:
        self.bodies += body
        self.body_ends.append(len(self.bodies))
        self.body_counts.append(count)
        return len(self.body_ends) - 1

    def add_key(self, name_wire: bytes, type_class: bytes, value: int) -> None:
        self.keys += name_wire
        self.keys += type_class
        self.keys += KEY_END
        self.key_values.append(value)

    def materialize(self) -> CompiledZone:
        """The dictionary and the zone; call it once the document is no longer referenced."""
        settings = self.settings
        ra = settings.recursion_available
        nodata_self = self._nodata(wire.POINTER_TO_QNAME)
        soa_self = prepare(
            wire.NOERROR,
            [
                wire.resource_record(
                    wire.POINTER_TO_QNAME, wire.TYPE_SOA, settings.negative_ttl, self.soa
                )
            ],
            [],
            ra=ra,
        )
        # Index 0 would be the apex itself, which answers with nodata_self.
        nodata_below_zone = tuple(
            self._nodata(wire.pointer(wire.HEADER_LEN + length)) if length else nodata_self
            for length in range(wire.MAX_NAME + 1 - len(self.zone_wire))
        )
        # Cut and link with comprehensions and zip: this runs once per key and value.
        bodies = bytes(self.bodies)
        body_ends = self.body_ends
        values: list[Answer] = [
            bodies[start:end] for start, end in pairwise(chain((0,), body_ends))
        ]
        del bodies
        counts = self.body_counts
        if counts.count(1) != len(counts):  # a name with several addresses: rare, and found in C
            for index in compress(range(len(counts)), map(ne, counts, repeat(1))):
                heads = prepared_heads(wire.NOERROR, counts[index], 0, aa=True, ra=ra)
                values[index] = Prepared(heads, values[index])  # type: ignore[arg-type]
        keys = bytes(self.keys).split(KEY_END)
        del keys[-1]  # what follows the last KEY_END
        answers: dict[bytes, Answer] = dict(
            zip(keys, map(values.__getitem__, self.key_values), strict=True)
        )
        del keys, values
        structural: dict[bytes, Prepared] = {}
        if settings.authoritative:
            structural[self.zone_wire] = nodata_self
            for parent in self.structural:
                structural[parent] = nodata_below_zone[len(parent) - len(self.zone_wire)]
        return CompiledZone(
            label=self.label,
            zone=self.zone,
            serial=self.serial,
            names=self.names,
            zone_wire=self.zone_wire,
            answers=answers,
            one_answer=prepared_heads(wire.NOERROR, 1, 0, aa=True, ra=ra),
            authoritative=settings.authoritative,
            recursion_available=ra,
            negative_ttl=settings.negative_ttl,
            soa_rdata=self.soa,
            nodata_self=nodata_self,
            soa_self=soa_self,
            nodata_below_zone=nodata_below_zone,
            structural=structural,
        )

    def _nodata(self, soa_owner: bytes) -> Prepared:
        soa = wire.resource_record(soa_owner, wire.TYPE_SOA, self.settings.negative_ttl, self.soa)
        return prepare(wire.NOERROR, [], [soa], ra=self.settings.recursion_available)


def _add_records(image: ZoneImage, records: Sequence[ViewRecord]) -> None:  # noqa: PLR0915 - one loop, inlined on purpose
    """Every record's A, AAAA and PTR answers, in one pass.

    A name longer than 253 octets plus the zone cannot be qualified: it answers
    bare only, and its addresses get no PTR (a PTR target must be a legal name).
    Records come sorted by name: the first name to claim an address keeps its PTR.
    This loop runs once per name: the image's appends and the common records are
    spelt out inline, and everything else is a local. A key is written as the
    name's labels followed by a constant tail (root or zone, type, class, end),
    so neither wire form of the name is built as an object of its own.
    """
    ttl = image.settings.ttl
    zone_wire = image.zone_wire
    zone_length = len(zone_wire)
    max_name = wire.MAX_NAME
    length_byte, u16 = _LENGTH_BYTE, _U16
    keys = image.keys
    link_key = image.key_values.append
    bodies, body_ends = image.bodies, image.body_ends
    end_body, count_body = body_ends.append, image.body_counts.append
    a_fixed = wire.POINTER_TO_QNAME + struct.pack("!HHIH", wire.TYPE_A, wire.CLASS_IN, ttl, 4)
    aaaa_fixed = wire.POINTER_TO_QNAME + struct.pack(
        "!HHIH", wire.TYPE_AAAA, wire.CLASS_IN, ttl, 16
    )
    ptr_fixed = wire.POINTER_TO_QNAME + struct.pack("!HHI", wire.TYPE_PTR, wire.CLASS_IN, ttl)
    octet, octet_label = _OCTET_BYTE, _OCTET_LABEL
    # Tails of keys: bare name (root label), qualified name (the zone), then type, class, end.
    bare_a, qualified_a = b"\x00" + _A_IN + KEY_END, zone_wire + _A_IN + KEY_END
    bare_aaaa, qualified_aaaa = b"\x00" + _AAAA_IN + KEY_END, zone_wire + _AAAA_IN + KEY_END
    ptr_tail = _PTR_IN + KEY_END
    claimed: set[bytes] = set()
    """Reverse names already given to an earlier name."""
    prefixes: dict[str, tuple[bytes, bytes]] = {}
    """A body's start up to the last octet and the reverse name after the first label, by
    the address's first three octets: a fleet's addresses share a few hundred of them."""
    ipv6_heads: dict[str, bytes] = {}
    ipv6_tails: dict[bytes, bytes] = {}
    """The same for IPv6, by the text before ``::`` and by the first 64 bits
    (``_ipv6_packed``, ``_ipv6_reverse``)."""
    for name, ipv4, ipv6, is_qualified in records:
        if "." in name:
            labels = wire.encode_name(name)[:-1]
        else:
            labels = length_byte[len(name)] + name.encode("ascii")
        qualifies = is_qualified and len(labels) + zone_length <= max_name
        if qualifies and len(ipv4) == 1 and len(ipv6) < 2:
            # The common records, spelt out: one name, one IPv4 address (and perhaps one
            # IPv6 address), and their PTRs, which share one answer. Each piece is
            # appended on its own: joining them first would allocate an object a piece.
            network, _, d = ipv4[0].rpartition(".")
            prefix = prefixes.get(network)
            if prefix is None:
                prefix = prefixes[network] = _network_prefix(network, a_fixed)
            bodies += prefix[0]
            bodies += octet[d]
            end_body(len(bodies))
            count_body(1)
            value = len(body_ends) - 1
            keys += labels
            keys += bare_a
            link_key(value)
            keys += labels
            keys += qualified_a
            link_key(value)
            reverse = octet_label[d] + prefix[1]
            reverse_names: tuple[bytes, ...] = (reverse,)
            if ipv6:
                packed = _ipv6_packed(ipv6[0], ipv6_heads)
                bodies += aaaa_fixed
                bodies += packed
                end_body(len(bodies))
                count_body(1)
                value = len(body_ends) - 1
                keys += labels
                keys += bare_aaaa
                link_key(value)
                keys += labels
                keys += qualified_aaaa
                link_key(value)
                reverse_names = (reverse, _ipv6_reverse(packed, ipv6_tails))
            ptr = -1
            for reverse_name in reverse_names:  # as _add_reverse_names, inline
                if reverse_name in claimed:
                    image.shared_reverse.add(reverse_name)
                    continue
                claimed.add(reverse_name)
                if ptr < 0:
                    bodies += ptr_fixed
                    bodies += u16[len(labels) + zone_length]
                    bodies += labels
                    bodies += zone_wire
                    end_body(len(bodies))
                    count_body(1)
                    ptr = len(body_ends) - 1
                keys += reverse_name
                keys += ptr_tail
                link_key(ptr)
            continue
        bare = labels + b"\x00"
        qualified = labels + zone_wire if qualifies else None
        if ipv4:
            for address in ipv4:
                a, b, c, d = address.split(".")
                bodies += a_fixed + octet[a] + octet[b] + octet[c] + octet[d]
            end_body(len(bodies))
            count_body(len(ipv4))
            value = len(body_ends) - 1
            image.add_key(bare, _A_IN, value)
            if qualified is not None:
                image.add_key(qualified, _A_IN, value)
        packed6 = [_ipv6_packed(address, ipv6_heads) for address in ipv6] if ipv6 else []
        if packed6:
            value = image.add_value(b"".join([aaaa_fixed + p for p in packed6]), len(packed6))
            image.add_key(bare, _AAAA_IN, value)
            if qualified is not None:
                image.add_key(qualified, _AAAA_IN, value)
        if qualified is None:
            continue
        _add_reverse_names(
            image,
            [
                *(ipv4_reverse_wire(address) for address in ipv4),
                *(_ipv6_reverse(p, ipv6_tails) for p in packed6),
            ],
            qualified,
            ptr_fixed,
            claimed,
        )


_FOURS = (4,) * 8


def _hex_groups(groups: str) -> bytes:
    """``1f18:5600`` as bytes: each group of hex digits is two octets."""
    return bytes.fromhex("".join(map(str.zfill, groups.split(":"), _FOURS))) if groups else b""


def _ipv6_packed(address: str, heads: dict[str, bytes]) -> bytes:
    """``ipv6_packed`` for the canonical text a view holds, at about half its cost.

    No check beyond the length: the document validated the text. What precedes
    ``::`` (mostly a fleet's /64) is packed once per compile, in ``heads``.
    """
    head, double, tail = address.partition("::")
    try:
        if not double:
            packed = _hex_groups(address)
        else:
            start = heads.get(head)
            if start is None:
                start = heads[head] = _hex_groups(head)
            end = _hex_groups(tail)
            packed = start + bytes(16 - len(start) - len(end)) + end
    except ValueError:
        packed = b""
    return packed if len(packed) == 16 else ipv6_packed(address)


def _ipv6_reverse(packed: bytes, tails: dict[bytes, bytes]) -> bytes:
    """``ipv6_reverse_wire``, with the labels of the first 64 bits (the last 16 labels)
    built once per compile, in ``tails``."""
    network = packed[:8]
    tail = tails.get(network)
    if tail is None:
        tail = tails[network] = ipv6_reverse_wire(network)
    return ("\x01" + "\x01".join(packed[8:].hex()[::-1])).encode("ascii") + tail


def _network_prefix(network: str, a_fixed: bytes) -> tuple[bytes, bytes]:
    """For ``a.b.c``: the A answer up to its last octet, and ``c.b.a.in-addr.arpa`` (wire)."""
    a, b, c = network.split(".")
    return a_fixed + _OCTET_BYTE[a] + _OCTET_BYTE[b] + _OCTET_BYTE[c], _in_addr_tail(a, b, c)


def _add_reverse_names(
    image: ZoneImage,
    reverse_names: list[bytes],
    target: bytes,
    ptr_fixed: bytes,
    claimed: set[bytes],
) -> None:
    """PTR answers pointing at ``target``, for the reverse names no earlier name claimed."""
    ptr = -1
    for reverse in reverse_names:
        if reverse in claimed:
            image.shared_reverse.add(reverse)
            continue
        claimed.add(reverse)
        if ptr < 0:
            ptr = image.add_value(ptr_fixed + _U16[len(target)] + target, 1)
        image.add_key(reverse, _PTR_IN, ptr)


def reverse_claims(records: Iterable[ViewRecord], zone_wire: bytes) -> dict[bytes, list[str]]:
    """Each reverse name (wire) with the names claiming it, in record order.

    The same rule as ``_add_records`` spelt out plainly, for the few names a
    reload changes: only qualified names claim, and the first claimant keeps the PTR.
    """
    claims: dict[bytes, list[str]] = {}
    for name, ipv4, ipv6, is_qualified in records:
        if not is_qualified or len(wire.encode_name(name)) - 1 + len(zone_wire) > wire.MAX_NAME:
            continue
        for address in ipv4:
            claims.setdefault(ipv4_reverse_wire(address), []).append(name)
        for address in ipv6:
            claims.setdefault(ipv6_reverse_wire(ipv6_packed(address)), []).append(name)
    return claims


PTR_TARGET_OFFSET = len(wire.POINTER_TO_QNAME) + struct.calcsize("!HHIH")
"""Where the target name starts in a PTR answer's body (after owner, type, class, TTL, length)."""


def _add_apex_and_empty_non_terminals(image: ZoneImage, records: Sequence[ViewRecord]) -> None:
    """In an authoritative zone the apex answers SOA, and parents of names exist."""
    qualified_names = {
        wire.encode_name(f"{record.name}.{image.zone}")
        for record in records
        if record.qualified and len(record.name) + 1 + len(image.zone_wire) <= wire.MAX_NAME
    }
    soa_answer = wire.resource_record(
        wire.POINTER_TO_QNAME, wire.TYPE_SOA, image.settings.negative_ttl, image.soa
    )
    image.add_key(image.zone_wire, SOA_QUESTION_SUFFIX, image.add_value(soa_answer, 1))
    parents: dict[bytes, None] = {}
    for record in records:
        if not record.qualified or "." not in record.name:
            continue
        if len(record.name) + 1 + len(image.zone_wire) > wire.MAX_NAME:
            continue  # answers bare only, so it has no parents under the zone
        labels = record.name.split(".")
        for start in range(1, len(labels)):
            parent = wire.encode_name(".".join(labels[start:]) + "." + image.zone)
            if parent not in qualified_names:
                parents[parent] = None
    image.structural = list(parents)


def compile_image(view: View, settings: ReplySettings) -> ZoneImage:
    """Every owned name of ``view`` (``name``, ``name.<zone>``, reverse names), as an image."""
    image = ZoneImage(view, settings)
    _add_records(image, view.records)
    if settings.authoritative:
        _add_apex_and_empty_non_terminals(image, view.records)
    return image


def compile_zone(
    view: View,
    *,
    ttl: int = 30,
    negative_ttl: int = 30,
    authoritative: bool = False,
    recursion_available: bool = False,
) -> CompiledZone:
    """Compile ``view`` straight to a zone (the pipeline frees the document in between)."""
    settings = ReplySettings(ttl, negative_ttl, authoritative, recursion_available)
    return compile_image(view, settings).materialize()
