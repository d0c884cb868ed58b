"""Compiling a view into precompiled replies keyed by the raw question.

The agent answers an owned name by gluing four byte strings: the client's ID,
a prepared header, the client's own question (so its letter case is echoed) and a
prepared body whose names point back at the question by compression. Everything
that does not depend on the client is computed here, once per document, off the
serving path; the result is immutable and swapped in whole.

A reload recompiles every name, so the loop below is written for 100,000 of
them: one pass per record, wire forms built from small lookup tables rather
than general encoders, and one shared reply object wherever two keys answer
alike.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from resolver.core import wire
from resolver.core.addresses import ipv6_packed, ipv6_reverse_name
from resolver.core.views import View

SOA_QUESTION_SUFFIX = struct.pack("!HH", wire.TYPE_SOA, wire.CLASS_IN)
_A_IN = struct.pack("!HH", wire.TYPE_A, wire.CLASS_IN)
_AAAA_IN = struct.pack("!HH", wire.TYPE_AAAA, wire.CLASS_IN)
_PTR_IN = struct.pack("!HH", wire.TYPE_PTR, wire.CLASS_IN)
_OCTET_BYTE = {str(value): bytes((value,)) for value in range(256)}
"""Dotted-quad text of one octet to its byte: four lookups beat ``int`` four times."""
_OCTET_LABEL = {str(value): wire.encode_name(str(value))[:-1] for value in range(256)}
"""The same text as a reverse-name label (length byte and digits)."""
_IN_ADDR_ARPA = wire.encode_name("in-addr.arpa")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A reply minus the client's ID and question.

    ``heads`` holds flags and counts, indexed by ``rd << 1 | edns``; ``body`` holds
    the sections after the question. Our OPT record, when the client used EDNS,
    is appended at reply time (``wire.OPT_BY_VARIANT``): storing three variants
    of every body would triple the zone's largest part for one concatenation.
    """

    heads: tuple[bytes, bytes, bytes, bytes]
    body: bytes


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
    answers: Mapping[bytes, Prepared]
    """Key: lowercased question name wire + type + class."""
    authoritative: bool
    recursion_available: bool
    negative_ttl: int
    soa_rdata: bytes
    nodata_self: Prepared
    """NODATA whose SOA owner is the question name itself (bare and reverse names)."""
    nodata_below_zone: tuple[Prepared, ...]
    """NODATA for ``name.<zone>``, indexed by the name's wire length minus the zone's:
    the SOA owner is the zone apex, a pointer into the question at that offset."""
    structural: Mapping[bytes, Prepared]
    """NODATA for names owned without data: the apex and empty non-terminals."""

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
def prepared_heads(
    rcode: int, an: int, ns: int, *, aa: bool, ra: bool, tc: bool = False
) -> tuple[bytes, bytes, bytes, bytes]:
    """Flags and counts for the four (RD, EDNS) combinations; cached so zones share them."""
    flags = wire.FLAG_QR | rcode
    if aa:
        flags |= wire.FLAG_AA
    if ra:
        flags |= wire.FLAG_RA
    if tc:
        flags |= wire.FLAG_TC
    return tuple(  # type: ignore[return-value]
        struct.pack("!HHHHH", flags | (wire.FLAG_RD if rd else 0), 1, an, ns, edns)
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
    return _OCTET_LABEL[d] + _OCTET_LABEL[c] + _OCTET_LABEL[b] + _OCTET_LABEL[a] + _IN_ADDR_ARPA


class _ZoneBuilder:
    """Accumulates the index for one view; used once by ``compile_zone``."""

    def __init__(self, view: View, ttl: int, negative_ttl: int, ra: bool) -> None:
        self.view = view
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.ra = ra
        self.zone_wire = wire.encode_name(view.zone)
        self.soa = wire.soa_rdata(view.zone, view.serial, negative_ttl)
        self.answers: dict[bytes, Prepared] = {}
        self.structural: dict[bytes, Prepared] = {}
        self.nodata_self = self._nodata(wire.POINTER_TO_QNAME)
        # Index 0 would be the apex itself, which answers with nodata_self.
        self.nodata_below_zone = tuple(
            self._nodata(wire.pointer(wire.HEADER_LEN + length)) if length else self.nodata_self
            for length in range(wire.MAX_NAME + 1 - len(self.zone_wire))
        )

    def _soa_record(self, owner: bytes) -> bytes:
        return wire.resource_record(owner, wire.TYPE_SOA, self.negative_ttl, self.soa)

    def _nodata(self, soa_owner: bytes) -> Prepared:
        return prepare(wire.NOERROR, [], [self._soa_record(soa_owner)], ra=self.ra)

    def add_records(self) -> None:
        """Every record's A, AAAA and PTR answers, in one pass over the view.

        A name longer than 253 octets plus the zone cannot be qualified: it answers
        bare only, and its addresses get no PTR (a PTR target must be a legal name).
        Records come sorted by name: the first name to claim an address keeps its PTR.
        """
        answers = self.answers
        setdefault = answers.setdefault
        ttl, ra = self.ttl, self.ra
        zone_wire = self.zone_wire
        a_fixed = wire.POINTER_TO_QNAME + struct.pack("!HHIH", wire.TYPE_A, wire.CLASS_IN, ttl, 4)
        aaaa_fixed = wire.POINTER_TO_QNAME + struct.pack(
            "!HHIH", wire.TYPE_AAAA, wire.CLASS_IN, ttl, 16
        )
        one_answer = prepared_heads(wire.NOERROR, 1, 0, aa=True, ra=ra)
        octet = _OCTET_BYTE
        for record in self.view.records:
            bare = wire.encode_name(record.name)
            qualified: bytes | None = None
            if record.qualified:
                qualified = bare[:-1] + zone_wire
                if len(qualified) > wire.MAX_NAME:
                    qualified = None
            ipv4, ipv6 = record.ipv4, record.ipv6
            if ipv4:
                bodies = []
                for address in ipv4:
                    a, b, c, d = address.split(".")
                    bodies.append(a_fixed + octet[a] + octet[b] + octet[c] + octet[d])
                heads = one_answer if len(ipv4) == 1 else self._heads(len(ipv4))
                reply = Prepared(heads, b"".join(bodies))
                answers[bare + _A_IN] = reply
                if qualified is not None:
                    answers[qualified + _A_IN] = reply
            if ipv6:
                body = b"".join([aaaa_fixed + ipv6_packed(address) for address in ipv6])
                heads = one_answer if len(ipv6) == 1 else self._heads(len(ipv6))
                reply = Prepared(heads, body)
                answers[bare + _AAAA_IN] = reply
                if qualified is not None:
                    answers[qualified + _AAAA_IN] = reply
            if qualified is not None:
                ptr = Prepared(
                    one_answer,
                    wire.resource_record(wire.POINTER_TO_QNAME, wire.TYPE_PTR, ttl, qualified),
                )
                for address in ipv4:
                    setdefault(ipv4_reverse_wire(address) + _PTR_IN, ptr)
                for address in ipv6:
                    setdefault(wire.encode_name(ipv6_reverse_name(address)) + _PTR_IN, ptr)

    def _heads(self, count: int) -> tuple[bytes, bytes, bytes, bytes]:
        return prepared_heads(wire.NOERROR, count, 0, aa=True, ra=self.ra)

    def add_apex_and_empty_non_terminals(self, zone: CompiledZone) -> None:
        """In an authoritative zone the apex answers SOA, and parents of names exist."""
        soa_answer = self._soa_record(wire.POINTER_TO_QNAME)
        self.answers[self.zone_wire + SOA_QUESTION_SUFFIX] = prepare(
            wire.NOERROR, [soa_answer], [], ra=self.ra
        )
        self.structural[self.zone_wire] = self.nodata_self
        for record in self.view.records:
            if not record.qualified or "." not in record.name:
                continue
            if len(record.name) + 1 + len(self.zone_wire) > wire.MAX_NAME:
                continue  # answers bare only, so it has no parents under the zone
            labels = record.name.split(".")
            for start in range(1, len(labels)):
                parent = wire.encode_name(".".join(labels[start:]) + "." + self.view.zone)
                if not zone.owns(parent):
                    self.structural[parent] = self.nodata_below_zone[
                        len(parent) - len(self.zone_wire)
                    ]

    def zone(self, *, authoritative: bool) -> CompiledZone:
        view = self.view
        return CompiledZone(
            label=view.label,
            zone=view.zone,
            serial=view.serial,
            names=len(view.records),
            zone_wire=self.zone_wire,
            answers=self.answers,
            authoritative=authoritative,
            recursion_available=self.ra,
            negative_ttl=self.negative_ttl,
            soa_rdata=self.soa,
            nodata_self=self.nodata_self,
            nodata_below_zone=self.nodata_below_zone,
            structural=self.structural,
        )


def compile_zone(
    view: View,
    *,
    ttl: int = 30,
    negative_ttl: int = 30,
    authoritative: bool = False,
    recursion_available: bool = False,
) -> CompiledZone:
    """Compile every owned name of ``view``: ``name``, ``name.<zone>`` and reverse names."""
    builder = _ZoneBuilder(view, ttl, negative_ttl, recursion_available)
    builder.add_records()
    zone = builder.zone(authoritative=authoritative)
    if authoritative:
        # The builder's dicts are the zone's: filling them completes the zone.
        builder.add_apex_and_empty_non_terminals(zone)
    return zone
