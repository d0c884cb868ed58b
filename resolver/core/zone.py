"""Compiling a view into precompiled replies keyed by the raw question.

The agent answers an owned name by gluing four byte strings: the client's ID,
a prepared header, the client's own question (so its letter case is echoed) and a
prepared body whose names point back at the question by compression. Everything
that does not depend on the client is computed here, once per document, off the
serving path; the result is immutable and swapped in whole.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from resolver.core import wire
from resolver.core.addresses import (
    ipv4_packed,
    ipv4_reverse_name,
    ipv6_packed,
    ipv6_reverse_name,
    is_canonical_ipv4,
)
from resolver.core.views import View, ViewRecord

SOA_QUESTION_SUFFIX = struct.pack("!HH", wire.TYPE_SOA, wire.CLASS_IN)


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
    """An immutable index from questions to prepared replies for one view."""

    label: str
    zone: str
    serial: int
    names: int
    zone_wire: bytes
    answers: Mapping[bytes, Prepared]
    """Key: lowercased question name wire + type + class."""
    nodata: Mapping[bytes, Prepared]
    """Key: lowercased question name wire; owned names answer NODATA for other types."""
    authoritative: bool
    recursion_available: bool
    negative_ttl: int
    soa_rdata: bytes


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


def _address_record(address: str, ttl: int) -> bytes:
    if is_canonical_ipv4(address):
        return wire.resource_record(wire.POINTER_TO_QNAME, wire.TYPE_A, ttl, ipv4_packed(address))
    return wire.resource_record(wire.POINTER_TO_QNAME, wire.TYPE_AAAA, ttl, ipv6_packed(address))


def _reverse_name(address: str) -> str:
    if is_canonical_ipv4(address):
        return ipv4_reverse_name(address)
    return ipv6_reverse_name(address)


def _key(name_wire: bytes, rtype: int) -> bytes:
    return name_wire + struct.pack("!HH", rtype, wire.CLASS_IN)


class _ZoneBuilder:
    """Accumulates the two indexes for one view; used once by ``compile_zone``."""

    def __init__(self, view: View, ttl: int, negative_ttl: int, ra: bool) -> None:
        self.view = view
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.ra = ra
        self.zone_wire = wire.encode_name(view.zone)
        self.soa = wire.soa_rdata(view.zone, view.serial, negative_ttl)
        self.answers: dict[bytes, Prepared] = {}
        self.nodata: dict[bytes, Prepared] = {}
        self.nodata_self = self._nodata(wire.POINTER_TO_QNAME)
        self._nodata_by_apex_offset: dict[int, Prepared] = {}

    def _soa_record(self, owner: bytes) -> bytes:
        return wire.resource_record(owner, wire.TYPE_SOA, self.negative_ttl, self.soa)

    def _nodata(self, soa_owner: bytes) -> Prepared:
        return prepare(wire.NOERROR, [], [self._soa_record(soa_owner)], ra=self.ra)

    def _nodata_under_zone(self, name_wire: bytes) -> Prepared:
        # The SOA owner is the zone apex: the tail of the question name. Names of the
        # same length share one reply, so a zone holds a few dozen of these, not one a name.
        offset = wire.HEADER_LEN + len(name_wire) - len(self.zone_wire)
        reply = self._nodata_by_apex_offset.get(offset)
        if reply is None:
            reply = self._nodata_by_apex_offset[offset] = self._nodata(wire.pointer(offset))
        return reply

    def qualified_wire(self, record: ViewRecord, bare_wire: bytes) -> bytes | None:
        """``name.<zone>`` in wire form, or None when not qualified or too long for DNS.

        Names are checked at 253 octets before the suffix is added, so a long name
        with a long zone can exceed 255 octets: such a name answers bare only, and
        its addresses get no PTR (a PTR target must be a legal name).
        """
        if not record.qualified:
            return None
        # The bare name's wire form minus its root label, then the zone's.
        name_wire = bare_wire[:-1] + self.zone_wire
        return name_wire if len(name_wire) <= wire.MAX_NAME else None

    def add_records(self) -> None:
        for record in self.view.records:
            owners = [wire.encode_name(record.name)]
            self.nodata[owners[0]] = self.nodata_self
            qualified = self.qualified_wire(record, owners[0])
            if qualified is not None:
                owners.append(qualified)
                self.nodata[qualified] = self._nodata_under_zone(qualified)
            for rtype, addresses in ((wire.TYPE_A, record.ipv4), (wire.TYPE_AAAA, record.ipv6)):
                if addresses:
                    rrs = [_address_record(address, self.ttl) for address in addresses]
                    reply = prepare(wire.NOERROR, rrs, [], ra=self.ra)
                    for owner in owners:
                        self.answers[_key(owner, rtype)] = reply
            if qualified is not None:
                self._add_reverse(qualified, (*record.ipv4, *record.ipv6))

    def _add_reverse(self, target: bytes, addresses: tuple[str, ...]) -> None:
        ptr = wire.resource_record(wire.POINTER_TO_QNAME, wire.TYPE_PTR, self.ttl, target)
        reply = prepare(wire.NOERROR, [ptr], [], ra=self.ra)
        for address in addresses:
            reverse_wire = wire.encode_name(_reverse_name(address))
            # Records come sorted by name: the first name to claim an address keeps it.
            self.answers.setdefault(_key(reverse_wire, wire.TYPE_PTR), reply)
            self.nodata.setdefault(reverse_wire, self.nodata_self)

    def add_apex_and_empty_non_terminals(self) -> None:
        """In an authoritative zone the apex answers SOA, and parents of names exist."""
        soa_answer = self._soa_record(wire.POINTER_TO_QNAME)
        self.answers[self.zone_wire + SOA_QUESTION_SUFFIX] = prepare(
            wire.NOERROR, [soa_answer], [], ra=self.ra
        )
        self.nodata[self.zone_wire] = self.nodata_self
        for record in self.view.records:
            labels = record.name.split(".")
            qualified = self.qualified_wire(record, wire.encode_name(record.name)) is not None
            for start in range(1, len(labels) if qualified else 0):
                parent = wire.encode_name(".".join(labels[start:]) + "." + self.view.zone)
                if parent not in self.nodata:
                    self.nodata[parent] = self._nodata_under_zone(parent)


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
    if authoritative:
        builder.add_apex_and_empty_non_terminals()
    return CompiledZone(
        label=view.label,
        zone=view.zone,
        serial=view.serial,
        names=len(view.records),
        zone_wire=builder.zone_wire,
        answers=builder.answers,
        nodata=builder.nodata,
        authoritative=authoritative,
        recursion_available=recursion_available,
        negative_ttl=negative_ttl,
        soa_rdata=builder.soa,
    )
