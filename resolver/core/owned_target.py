"""A forwarded answer whose CNAME chain ends at a name the view owns, completed.

An operator may point a name held elsewhere at a fleet name: a Route 53 record
``db.corp.example CNAME db1.internal``. The upstream follows the CNAME and finds
nothing at ``db1.internal`` (only this agent knows it), so its reply is the
CNAME alone, with NXDOMAIN or an empty NOERROR. A stub such as glibc does not
chase a CNAME itself, so the client would get no address for a name that has
one. A resolver holding data of its own restarts at the target (RFC 1034 4.3.2,
step 3.c), as BIND does for its own zones, so the agent does the same: the chain
as the upstream gave it, then the view's records of the type asked for the
target (A, AAAA, or PTR for one of its reverse names), or NODATA with the view's
SOA when it has none of that type (an HTTPS question, say): the name exists, so
the upstream's NXDOMAIN would be wrong.

Questions of class IN are completed, of any type but CNAME, ANY and the meta
types, and only when the upstream gave no record of that type for the chain's
end: an upstream that does answer the target keeps its answer. The completed
reply is not the upstream's signed data, so it never carries AD, and the
upstream's authority and additional sections (an SOA for the NXDOMAIN, say) and
its Extended DNS Error go with the NXDOMAIN.
Cached, it expires with the shortest TTL in it, the view's own among them; and a
reload drops every cached chain (``starts_a_chain``), completed or not, so the next
question sees the new view's data at once.
"""

from __future__ import annotations

import struct

from resolver.core import wire
from resolver.core.upstream_reply import (
    RR_FIXED,
    UpstreamAnswer,
    answer_from_sections,
    read_name,
    skip_name,
)
from resolver.core.zone import CompiledZone

MAX_CHAIN = 16
"""CNAMEs followed at most: longer chains (and loops) are left as the upstream sent them."""

_NOT_CHASED = frozenset((wire.TYPE_CNAME, wire.TYPE_ANY, wire.TYPE_OPT, *range(249, 255)))
"""Question types a CNAME is not followed for: CNAME itself (the alias is the
answer), ANY, OPT, and the transfer, TSIG and TKEY meta types (RFC 1034 3.6.2)."""
_COMPLETED_RCODES = frozenset((wire.NOERROR, wire.NXDOMAIN))
_CHAIN_TYPES = frozenset(struct.pack("!H", t) for t in (wire.TYPE_CNAME, wire.TYPE_RRSIG))
_CHAIN_STARTS = frozenset(wire.POINTER_TO_QNAME + rtype for rtype in _CHAIN_TYPES)
"""How the first record of a chain at the question name begins: its CNAME, or the
CNAME's signature from an upstream that put it first."""
_FIRST_OF_A_CHAIN = _CHAIN_TYPES | {struct.pack("!H", wire.TYPE_DNAME)}
"""The types a chain's first record may have when its owner is not the question
name: those of ``_CHAIN_TYPES``, and a DNAME at an ancestor (RFC 6672), which
comes before the CNAME synthesised from it."""
_FLAGS = wire.FLAG_QR | wire.FLAG_RD | wire.FLAG_RA


def complete_with_owned(answer: UpstreamAnswer, key: bytes, zone: CompiledZone) -> UpstreamAnswer:
    """``answer`` to the question ``key`` (lowercased name wire, type, class),
    completed with the view's data when its CNAME chain ends at an owned name;
    otherwise ``answer`` itself.

    Cheap for the common reply: one whose first record, at the question name, is
    neither a CNAME nor its signature is returned after two slice comparisons.
    """
    sections = answer.sections
    if (
        answer.an == 0
        or answer.truncated
        or answer.rcode not in _COMPLETED_RCODES
        or key[-2:] != b"\x00\x01"  # class IN
        or (key[-4] << 8 | key[-3]) in _NOT_CHASED
        or (sections[:2] == wire.POINTER_TO_QNAME and sections[:4] not in _CHAIN_STARTS)
    ):
        return answer
    try:
        return _completed(answer, key, zone)
    except (ValueError, struct.error, IndexError):  # a chain we cannot read: as it came
        return answer


def starts_a_chain(answer: UpstreamAnswer) -> bool:
    """Whether ``answer`` begins with a CNAME (or its signature, or a DNAME): what a
    reload must not leave in the cache, as its chain may end in the view."""
    sections = answer.sections
    if not answer.an:
        return False
    if sections[:2] == wire.POINTER_TO_QNAME:
        return sections[:4] in _CHAIN_STARTS
    try:  # an owner written out, or compressed against something else
        position = skip_name(sections, 0)
    except ValueError:
        return False
    return sections[position : position + 2] in _FIRST_OF_A_CHAIN


def _completed(answer: UpstreamAnswer, key: bytes, zone: CompiledZone) -> UpstreamAnswer:
    qtype_class = key[-4:]
    qtype = qtype_class[0] << 8 | qtype_class[1]
    # The sections' compression pointers count from the start of the upstream's
    # message: a stand-in header and the question (same length) put them back in place.
    qend = wire.HEADER_LEN + len(key)
    message = bytes(wire.HEADER_LEN) + key + answer.sections
    aliases: dict[bytes, bytes] = {}
    answered: set[bytes] = set()
    position = qend
    for _ in range(answer.an):
        owner = read_name(message, position)
        position = skip_name(message, position)
        rtype, rclass, _ttl, rdlength = RR_FIXED.unpack_from(message, position)
        rdata = position + 10
        position = rdata + rdlength
        if position > len(message):
            raise ValueError("record runs past the end")
        if rclass != wire.CLASS_IN:
            continue
        if rtype == wire.TYPE_CNAME:
            aliases.setdefault(owner, read_name(message, rdata))
        elif rtype == qtype:
            answered.add(owner)
    chain = [key[:-4]]
    for _ in range(MAX_CHAIN):
        following = aliases.get(chain[-1])
        if following is None:
            break
        chain.append(following)
    if chain[-1] in aliases:
        return answer  # a loop, or longer than any sane chain
    target = chain[-1]
    if len(chain) == 1 or target in answered:
        return answer
    if any(zone.nodata_for(name) is not None for name in chain[1:-1]):
        return answer  # it runs on past a name of ours: the upstream's, as it came
    owned = _owned_records(zone, target, qtype_class)
    if owned is None:
        return answer
    records, count, authority = owned
    sections = message[qend:position] + records + authority
    completed = answer_from_sections(
        _FLAGS, key, sections, answer.an + count, 1 if authority else 0, 0
    )
    return completed._replace(edns=answer.edns)


def _owned_records(
    zone: CompiledZone, name: bytes, qtype_class: bytes
) -> tuple[bytes, int, bytes] | None:
    """The view's records for ``name`` (lowercased wire) and the asked type, their
    count, and the authority section (our SOA when it has none); None if not owned."""
    prepared = zone.lookup(name + qtype_class)
    if prepared is not None:
        # Each record of an owned answer names its owner by a pointer to the
        # question; here the owner is the chain's end, written out in full.
        body = prepared.body
        records = bytearray()
        count = 0
        position = 0
        while position < len(body):
            if body[position : position + 2] != wire.POINTER_TO_QNAME:
                return None  # not a record at the question name: nothing we can move
            rdlength = struct.unpack_from("!H", body, position + 10)[0]
            end = position + 12 + rdlength
            records += name + body[position + 2 : end]
            count += 1
            position = end
        return bytes(records), count, b""
    if zone.nodata_for(name) is None:
        return None
    # NODATA: the name exists without this family; the SOA's owner is the zone
    # apex for a qualified name, as in the agent's own NODATA, or the bare name.
    apex = zone.zone_wire if name.endswith(zone.zone_wire) else name
    soa = wire.resource_record(apex, wire.TYPE_SOA, zone.negative_ttl, zone.soa_rdata)
    return b"", 0, soa
