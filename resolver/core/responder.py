"""One function from request bytes to reply bytes: the agent's DNS behaviour.

The fast path answers the common query (one question, no compression, at most an
OPT record) for an owned name with a dictionary lookup and one concatenation. For a
well-formed name not owned it gives, from the same bytes, a cached answer, the
Question to forward, REFUSED, or NXDOMAIN under an authoritative zone: a typo, a
search-domain probe or a cache miss costs about what an owned answer does.
Everything else goes to the slow path, which parses the question and walks the
additional section itself (names are skipped, never followed, so no input costs
more than one linear pass) and applies the full error policy of DESIGN.md.
Modelled on dnspython's I/O-free core: no sockets here, the adapters decide how
bytes travel.
"""

from __future__ import annotations

import logging
import struct
from typing import NamedTuple

from resolver.core import wire
from resolver.core.cache import AnswerCache
from resolver.core.names import AWS_NAMESPACES
from resolver.core.query_stats import QTYPE_OTHER, QueryStats
from resolver.core.zone import CompiledZone, Heads, Prepared, head_index, prepared_heads

log = logging.getLogger("tagdns.responder")

_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00\x00"
"""QDCOUNT=1, ANCOUNT=0, NSCOUNT=0 and the high byte of ARCOUNT."""
_OPT_PREFIX = b"\x00\x00\x29"
"""Root owner name and TYPE=OPT: how every EDNS query's additional section begins."""
_CLASS_IN = b"\x00\x01"
_OPT_BY_VARIANT = wire.OPT_BY_VARIANT
_TYPE_ANY = b"\x00\xff"
_TYPE_SOA = b"\x00\x06"
_TRANSFERS = frozenset({251, 252})
"""IXFR and AXFR: this agent transfers no zones, and a transfer is not a question
an upstream resolver answers either, so every one is REFUSED (RFC 5936 2.2.1)."""
_META_TYPES = frozenset({wire.TYPE_OPT, *range(128, 251), 253, 254})
"""Types no record is held under, so none can be asked for: OPT, the meta and
reserved range up to TSIG (250), MAILB and MAILA. They get FORMERR, owned or not,
as from unbound (BIND too, for OPT, TKEY and TSIG). Forwarded, each drew an upstream
error and so SERVFAIL, after asking every upstream."""
_NOT_NODATA = frozenset(
    {_TYPE_ANY, b"\x00\xfb", b"\x00\xfc", *(struct.pack("!H", t) for t in _META_TYPES)}
)
"""Question types the fast path leaves to ``answer``: ANY, the transfers and the
meta types."""
_MAX_NAME_WIRE = wire.MAX_NAME
_HEADER_LEN = wire.HEADER_LEN
_MAX_UDP_PLAIN = wire.MAX_UDP_PLAIN
"""Module constants, not ``wire.`` attributes, where the fast path reads them."""
MAX_QUERY_BYTES = 4096
"""The most of a query read, over UDP or TCP. No real query comes near it (one
question, an OPT with a few options, perhaps a TSIG); a longer one is answered
FORMERR from its header (``Responder.cut``), so no message costs more to answer
than one of this size."""
_MAX_ADDITIONAL = 4
"""Additional records a query may carry: an OPT, a TSIG, and room for the odd
client that adds one more. More is FORMERR without walking them: hundreds of
records in one datagram otherwise cost a hundred times an answer's CPU."""
_MAX_OPTIONS = 32
"""EDNS options walked in one OPT (a query sends a handful: cookie, padding,
client subnet, NSID); more is FORMERR, for the same reason."""
_MAX_WALKED = 8
"""Questions and records an error reply looks through for the query's OPT, to echo
it (RFC 6891 6.1.1): enough for any query this side of FORMERR."""
_RR_FIXED = struct.Struct("!HHIH")
"""TYPE, CLASS, TTL and RDLENGTH: the fixed part of a resource record after its owner."""
_ECHOED = wire.FLAG_RD | wire.FLAG_CD
"""The query's flags every reply copies (RFC 1035 4.1.1, RFC 4035 3.1.6)."""
_ANY_TYPES = (wire.TYPE_A, wire.TYPE_AAAA, wire.TYPE_PTR, wire.TYPE_SOA)
"""Every type the zone indexes; an ANY query for an owned name gets all it has of them."""


class Question(NamedTuple):
    """A parsed query, enough to answer it or to forward it.

    A named tuple: one is built for every query forwarded, and a frozen
    dataclass cost four times as much to build.
    """

    qid: bytes
    flags: int
    question: bytes
    """The question section as the client sent it (its case is echoed)."""
    key: bytes
    """The question lowercased: the index key of the zone and of the cache."""
    qtype: int
    qclass: int
    edns: bool
    do: bool
    payload: int

    @property
    def qname_wire(self) -> bytes:
        return self.key[:-4]

    @property
    def rd(self) -> bool:
        return bool(self.flags & wire.FLAG_RD)

    def udp_limit(self) -> int:
        """The largest UDP reply this client accepts (RFC 6891: never under 512)."""
        if not self.edns:
            return wire.MAX_UDP_PLAIN
        return max(wire.MAX_UDP_PLAIN, min(self.payload, wire.EDNS_PAYLOAD))


class Responder:
    """Answers queries from one compiled zone; immutable, swapped whole on reload.

    ``respond`` returns reply bytes, ``None`` (drop), or a ``Question`` when the
    name is not owned and a forwarder exists: the adapter then asks upstream.
    """

    def __init__(
        self,
        zone: CompiledZone,
        *,
        forwarding: bool,
        cache: AnswerCache | None = None,
        stats: QueryStats | None = None,
    ) -> None:
        self.zone = zone
        self.forwarding = forwarding
        self._answers = zone.answers
        self._nodata_for = zone.nodata_for
        self._nodata_self = zone.nodata_self
        self._soa_self = zone.soa_self
        self._one_answer = zone.one_answer
        self._cache = cache if forwarding else None
        self.stats = stats if stats is not None else QueryStats()
        """Shared by every Responder of an agent, so the counts outlive a zone swap."""
        self._fast_owned = self.stats.fast_owned
        self._zone_wire_len = len(zone.zone_wire)
        self._nxdomain_heads = prepared_heads(
            wire.NXDOMAIN, 0, 1, aa=True, ra=zone.recursion_available
        )
        self._nxdomain_soa = wire.resource_record(
            b"", wire.TYPE_SOA, zone.negative_ttl, zone.soa_rdata
        )
        """The SOA of an NXDOMAIN, but for its owner: a pointer that depends on the question."""

    def respond(self, data: bytes, *, udp: bool = True) -> bytes | Question | None:
        """Reply to one DNS message; never raises for any input (SERVFAIL instead)."""
        try:
            reply = self._fast(data, udp)
            if reply is not None:
                return reply  # the fast path did its own (cheaper) accounting
            slow = self._slow(data, udp)
        except Exception:  # the error policy: any internal error is SERVFAIL, logged
            log.exception("internal error answering a query (%d bytes): SERVFAIL", len(data))
            self.stats.internal_errors += 1
            slow = servfail(data)
        self.stats.count(data, slow)
        return slow

    def _fast(self, data: bytes, udp: bool) -> bytes | Question | None:
        """The common query shape: owned names, cached answers, and names not ours
        (``_not_ours``); None means 'use the slow path'."""
        end = data.find(0, _HEADER_LEN)
        qend = end + 5
        size = len(data)
        if end < 0 or qend > size or data[2] & 0xF8 or data[4:11] != _ONE_QUESTION:
            return None
        if data[11] == 0 and size == qend:
            variant, limit = 0, _MAX_UDP_PLAIN
        elif (
            data[11] == 1
            and data[qend : qend + 3] == _OPT_PREFIX
            and size >= qend + 11
            and data[qend + 6] == 0  # EDNS version 0; others go to the slow path (BADVERS)
            and size == qend + 11 + (data[qend + 9] << 8 | data[qend + 10])
            and (size == qend + 11 or _options_framed(data, qend + 11, size))
        ):
            variant = 2 if data[qend + 7] & 0x80 else 1
            limit = max(_MAX_UDP_PLAIN, min(data[qend + 3] << 8 | data[qend + 4], 1232))
        else:
            return None
        question = data[_HEADER_LEN:qend]
        # Lowercasing the type and class bytes too is safe: no type the zone indexes
        # (1, 12, 28) nor class IN has a byte in A-Z, so no other type can alias one.
        key = question.lower()
        value = self._answers.get(key)
        heads: Heads
        body: bytes
        if value is None:
            prepared = None
            plain = (
                data[qend - 2 : qend] == _CLASS_IN and data[qend - 4 : qend - 2] not in _NOT_NODATA
            )
            if plain:
                prepared = self._nodata_for(key[:-4])
                if prepared is self._nodata_self and data[qend - 4 : qend - 2] == _TYPE_SOA:
                    prepared = self._soa_self
            if prepared is None:
                not_ours = self._not_ours(
                    data, question, key, qend, variant, limit if udp else None, plain
                )
                if not_ours is None or isinstance(not_ours, (bytes, Question)):
                    return not_ours
                heads, body = not_ours
            else:
                self.stats.count_owned(data[qend - 4], data[qend - 3])
                heads, body = prepared.heads, prepared.body
        else:
            # One increment is the whole accounting: an owned answer is NOERROR with AA,
            # and a zone-indexed type (A, AAAA, PTR, SOA) is below 256.
            self._fast_owned[data[qend - 3]] += 1
            if isinstance(value, Prepared):
                heads, body = value.heads, value.body
            else:
                heads, body = self._one_answer, value
        # head_index from the flag bytes: CD is 0x10 of the low byte, RD 0x01 of the high.
        reply = (
            data[:2]
            + heads[(data[3] & 0x10) >> 2 | (data[2] & 1) << 1 | (variant > 0)]
            + question
            + body
            + _OPT_BY_VARIANT[variant]
        )
        if udp and len(reply) > limit:
            flags = data[2] << 8 | data[3]
            return truncated(data[:2], flags, question, variant, ra=_ra(heads))
        return reply

    def _not_ours(
        self,
        data: bytes,
        question: bytes,
        key: bytes,
        qend: int,
        variant: int,
        limit: int | None,
        plain: bool,
    ) -> bytes | Question | tuple[Heads, bytes] | None:
        """A name the zone has nothing for, on the fast path, counted here.

        A forwarded answer still in the cache is replayed. Otherwise a well-formed
        class-IN name (``plain``) gets what ``answer`` would decide, without the full
        parse: NXDOMAIN under an authoritative zone (as heads and body), else the
        Question to forward, else REFUSED. Anything else is None: the slow path.

        One method, as these steps only ever run in this order: it is the path of
        every cache miss, and each call there is paid for on cold caches.
        """
        cache = self._cache
        stats = self.stats
        if cache is not None:
            # The cache is keyed by the exact type and class (65, HTTPS, must not read
            # as 97), then one byte for the DO and CD bits.
            reply = cache.replay(
                key[:-4] + data[qend - 4 : qend] + _DO_CD[(variant == 2) | (data[3] & 0x10) >> 3],
                data,
                qend,
                variant,
                limit,
            )
            if reply is not None:
                stats.qtypes[QTYPE_OTHER if data[qend - 4] else data[qend - 3]] += 1
                stats.count_reply(reply)
                return reply
        if not plain:
            return None
        # Only a name parse_query accepts: labels of at most 63 octets ending exactly
        # at the first zero octet, under 256 octets in all.
        end = qend - 5
        if end - _HEADER_LEN >= _MAX_NAME_WIRE:
            return None
        position = _HEADER_LEN
        while position < end:
            length = data[position]
            if length > 63:
                return None
            position += length + 1
        if position != end:
            return None
        stats.qtypes[QTYPE_OTHER if data[qend - 4] else data[qend - 3]] += 1
        zone = self.zone
        if zone.authoritative and _denied(key[:-4], zone):
            # The SOA's owner points at the zone's apex inside the question, as
            # ``_nxdomain`` builds it.
            stats.replies[_NXDOMAIN_SLOT] += 1
            apex = _pointer(qend - 4 - self._zone_wire_len)
            return self._nxdomain_heads, apex + self._nxdomain_soa
        if self.forwarding:
            # The Question as parse_query reads it. tuple.__new__ with the fields in
            # order: the named tuple's own __new__, a Python frame taking keywords,
            # was a quarter of a cache miss's time in respond().
            return _new_tuple(
                Question,
                (
                    data[:2],
                    data[2] << 8 | data[3],
                    question,
                    key[:-4] + data[qend - 4 : qend],  # the exact type: 65 (HTTPS) is not 97
                    data[qend - 4] << 8 | data[qend - 3],
                    data[qend - 2] << 8 | data[qend - 1],
                    variant > 0,
                    variant == 2,
                    data[qend + 3] << 8 | data[qend + 4] if variant else 0,
                ),
            )
        stats.replies[_REFUSED_SLOT] += 1
        # No truncation check: the longest name with this OPT is under 512 octets.
        head = _REFUSED[(data[3] & 0x10) >> 2 | (data[2] & 1) << 1 | (variant > 0)]
        return data[:2] + head + question + _REFUSED_OPT[variant]

    def _slow(self, data: bytes, udp: bool) -> bytes | Question | None:
        parsed = parse_query(data)
        if not isinstance(parsed, Question):
            return self._with_ra(parsed)
        return self.answer(parsed, udp=udp)

    def cut(self, data: bytes) -> bytes | None:
        """FORMERR for a message longer than ``MAX_QUERY_BYTES`` (a datagram that
        arrived cut, or a TCP message over that size), judged by its header."""
        return self._with_ra(bare_error(data, wire.FORMERR))

    def _with_ra(self, reply: bytes | None) -> bytes | None:
        """RA says what this server offers, whatever the reply (RFC 1035 4.1.1)."""
        if reply is None or not self.zone.recursion_available:
            return reply
        return reply[:3] + bytes((reply[3] | wire.FLAG_RA,)) + reply[4:]

    def answer(self, q: Question, *, udp: bool) -> bytes | Question:
        """Answer a parsed question: owned, NXDOMAIN in an authoritative zone, or not ours."""
        zone = self.zone
        if q.qtype in _TRANSFERS:
            return error_reply(q, wire.REFUSED, ra=zone.recursion_available)
        if q.qtype in _META_TYPES:
            return error_reply(q, wire.FORMERR, ra=zone.recursion_available)
        prepared: Prepared | None = None
        if q.qclass in (wire.CLASS_IN, wire.CLASS_ANY):
            # QCLASS * matches class IN, the only class the zone has data in.
            prepared = zone.lookup(q.qname_wire + struct.pack("!HH", q.qtype, wire.CLASS_IN))
            if prepared is None and q.qtype == wire.TYPE_ANY:
                reply = self._answer_any(q, udp)
                if reply is not None:
                    return reply
            if prepared is None:
                prepared = self._nodata_for(q.qname_wire)
                if prepared is zone.nodata_self and q.qtype == wire.TYPE_SOA:
                    prepared = zone.soa_self
        if prepared is not None:
            return finish(q, prepared, udp=udp)
        if q.qclass == wire.CLASS_IN and _denied(q.qname_wire, zone):
            return self._nxdomain(q, udp)
        if self.forwarding:
            return q
        return error_reply(q, wire.REFUSED, ra=False, options=_REFUSED_EDE)

    def _answer_any(self, q: Question, udp: bool) -> bytes | None:
        """ANY for an owned name: every RRset it has (A, AAAA, PTR, apex SOA) together.

        None when the name has no data: the caller decides NODATA, NXDOMAIN or forwarding.
        """
        name = q.qname_wire
        zone = self.zone
        parts = [zone.lookup(name + struct.pack("!HH", t, wire.CLASS_IN)) for t in _ANY_TYPES]
        found = [p for p in parts if p is not None]
        if not found:
            return None
        count = sum(struct.unpack("!H", p.heads[0][4:6])[0] for p in found)
        sections = b"".join(p.body for p in found)
        heads = prepared_heads(wire.NOERROR, count, 0, aa=True, ra=self.zone.recursion_available)
        return finish(q, Prepared(heads, sections), udp=udp)

    def _nxdomain(self, q: Question, udp: bool) -> bytes:
        apex = wire.pointer(wire.HEADER_LEN + len(q.qname_wire) - self._zone_wire_len)
        return finish(q, Prepared(self._nxdomain_heads, apex + self._nxdomain_soa), udp=udp)


_AWS_WIRES = tuple(wire.encode_name(namespace) for namespace in AWS_NAMESPACES)


def _denied(name_wire: bytes, zone: CompiledZone) -> bool:
    """Whether a name the zone has nothing for gets NXDOMAIN (else it is forwarded).

    Only in an authoritative zone, and never for AWS's own names: a zone of
    ``internal`` is their parent, and ``ip-10-0-0-5.ec2.internal`` must keep
    resolving upstream.
    """
    if not (zone.authoritative and _under(name_wire, zone.zone_wire)):
        return False
    for aws in _AWS_WIRES:  # noqa: SIM110 - a loop, not all() over a generator: on the fast path
        if _under(name_wire, aws):
            return False
    return True


def _under(name_wire: bytes, zone_wire: bytes) -> bool:
    """True when ``name_wire`` is ``zone_wire`` or below it, on a label boundary."""
    if not name_wire.endswith(zone_wire):
        return False
    cut = len(name_wire) - len(zone_wire)
    position = 0
    while position < cut:
        position += name_wire[position] + 1
    return position == cut


def _ra(heads: Heads) -> bool:
    """Whether a prepared reply advertises recursion (RA is in the low flags byte)."""
    return bool(heads[0][1] & wire.FLAG_RA)


def _variant(q: Question) -> int:
    if not q.edns:
        return 0
    return 2 if q.do else 1


def finish(q: Question, prepared: Prepared, *, udp: bool) -> bytes:
    """Assemble a prepared reply for a parsed question; TC when it exceeds the UDP limit."""
    variant = _variant(q)
    reply = (
        q.qid
        + prepared.heads[_head_index(q.flags, variant)]
        + q.question
        + prepared.body
        + _OPT_BY_VARIANT[variant]
    )
    if udp and len(reply) > q.udp_limit():
        return truncated(q.qid, q.flags, q.question, variant, ra=_ra(prepared.heads))
    return reply


def _head_index(flags: int, variant: int) -> int:
    """``head_index`` for a query's flags word and EDNS variant."""
    return head_index(
        1 if flags & wire.FLAG_CD else 0, 1 if flags & wire.FLAG_RD else 0, 1 if variant else 0
    )


def truncated(qid: bytes, flags: int, question: bytes, variant: int, *, ra: bool = False) -> bytes:
    """An empty reply with TC=1: the client retries over TCP (RFC 7766)."""
    heads = prepared_heads(wire.NOERROR, 0, 0, aa=True, ra=ra, tc=True)
    opt = wire.opt_record(do=variant == 2) if variant else b""
    return qid + heads[_head_index(flags, variant)] + question + opt


def error_reply(q: Question, rcode: int, *, ra: bool, options: bytes = b"") -> bytes:
    """REFUSED, SERVFAIL and the like for a parsed question, with OPT when asked
    (carrying ``options``, such as an Extended DNS Error: only EDNS clients get them)."""
    flags = wire.FLAG_QR | (q.flags & _ECHOED) | rcode | (wire.FLAG_RA if ra else 0)
    opt = wire.opt_record(do=q.do, options=options) if q.edns else b""
    return wire.header(q.qid, flags, 1, 0, 0, 1 if q.edns else 0) + q.question + opt


def bare_error(
    data: bytes, rcode: int, question: bytes = b"", *, options: bytes = b""
) -> bytes | None:
    """An error reply for a message whose question cannot be trusted (or, given
    ``question``, whose additional section is at fault), with OPT when it has one.

    RFC 6891 6.1.1 and 7: a request that carries an OPT gets one back, FORMERR and
    NOTIMP included, so that the client does not conclude EDNS is unsupported.
    """
    if len(data) < wire.HEADER_LEN:
        return None
    flags = struct.unpack("!H", data[2:4])[0]
    if flags & wire.FLAG_QR:
        return None
    reply_flags = wire.FLAG_QR | (flags & (wire.OPCODE_MASK | _ECHOED)) | rcode
    opt_ttl = _request_opt_ttl(data)
    opt = (
        b""
        if opt_ttl is None
        else wire.opt_record(do=bool(opt_ttl & wire.EDNS_DO), options=options)
    )
    return (
        wire.header(data[:2], reply_flags, 1 if question else 0, 0, 0, 1 if opt else 0)
        + question
        + opt
    )


def _request_opt_ttl(data: bytes) -> int | None:
    """The TTL field (extended RCODE, version, DO) of the first OPT record in the
    additional section of ``data``, or None when there is none among the first
    ``_MAX_WALKED`` questions and records, or the sections do not hold together up
    to it. Counts are trusted only as far as the bytes go."""
    qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHH", data, 4)
    position, size = wire.HEADER_LEN, len(data)
    questions = min(qdcount, _MAX_WALKED)
    for _ in range(questions):
        position = _skip_name(data, position) + 4
        if position < 4 or position > size:
            return None
    for index in range(min(ancount + nscount + arcount, _MAX_WALKED - questions)):
        fixed = _skip_name(data, position)
        if fixed < 0 or fixed + _RR_FIXED.size > size:
            return None
        rtype, _rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, fixed)
        if rtype == wire.TYPE_OPT and index >= ancount + nscount:
            return int(ttl)
        position = fixed + _RR_FIXED.size + rdlength
    return None


def servfail(data: bytes) -> bytes | None:
    """The last resort for an internal error: SERVFAIL, echoing the question if it
    parses, and saying so to EDNS clients (``_INTERNAL_ERROR_EDE``)."""
    try:
        parsed = parse_query(data)
    except Exception:
        parsed = None
    if isinstance(parsed, Question):
        return error_reply(parsed, wire.SERVFAIL, ra=False, options=_INTERNAL_ERROR_EDE)
    return bare_error(data, wire.SERVFAIL, options=_INTERNAL_ERROR_EDE)


def _read_question(data: bytes) -> tuple[int, bytes] | None:
    """End offset and lowercased name wire of the question name, or None if malformed.

    Compression is refused: at offset 12 there is nothing earlier a question may
    legitimately point to.
    """
    position = wire.HEADER_LEN
    size = len(data)
    while True:
        if position >= size:
            return None
        length = data[position]
        if length == 0:
            break
        if length > 63:
            return None
        position += length + 1
        if position - wire.HEADER_LEN >= _MAX_NAME_WIRE:
            return None
    end = position + 1
    if end + 4 > size:
        return None
    return end + 4, data[wire.HEADER_LEN : end].lower()


def _skip_name(data: bytes, position: int) -> int:
    """Offset just past a possibly compressed name, or -1 if malformed; pointers aren't followed."""
    start, size = position, len(data)
    while position < size:
        length = data[position]
        if length == 0:
            return position + 1
        if length >= 0xC0:
            return position + 2 if position + 2 <= size else -1
        if length > 63:
            return -1
        position += length + 1
        if position - start >= _MAX_NAME_WIRE:
            return -1
    return -1


def _options_framed(data: bytes, position: int, end: int) -> bool:
    """Whether an OPT RDATA is a clean sequence of (code, length, value) options,
    ``_MAX_OPTIONS`` at most."""
    for _ in range(_MAX_OPTIONS):
        if position + 4 > end:
            break
        position += 4 + (data[position + 2] << 8 | data[position + 3])
    return position == end


def _opt_records(data: bytes, position: int, count: int) -> list[tuple[int, int]] | None:
    """(payload, TTL field) of each OPT among ``count`` records at ``position``; None if malformed.

    One linear pass: owner names are skipped, never decompressed, since nothing here
    needs them and following pointers is where parsers loop or go quadratic.
    """
    opts: list[tuple[int, int]] = []
    size = len(data)
    for _ in range(count):
        fixed = _skip_name(data, position)
        if fixed < 0 or fixed + _RR_FIXED.size > size:
            return None
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, fixed)
        rdata = fixed + _RR_FIXED.size
        end = rdata + rdlength
        if end > size:
            return None
        if rtype == wire.TYPE_OPT:
            # RFC 6891 6.1.1: the OPT owner is the root name.
            if data[position] != 0 or not _options_framed(data, rdata, end):
                return None
            opts.append((rclass, ttl))
        position = end
    return opts


def parse_query(data: bytes) -> Question | bytes | None:
    """Parse a query fully: a Question, an error reply (FORMERR, NOTIMP, BADVERS) or None (drop)."""
    if len(data) < wire.HEADER_LEN:
        return None
    flags, qdcount, ancount, nscount, arcount = struct.unpack("!HHHHH", data[2:12])
    if flags & wire.FLAG_QR:
        return None
    if flags & wire.OPCODE_MASK:
        return bare_error(data, wire.NOTIMP)
    if qdcount != 1 or ancount or nscount:
        return bare_error(data, wire.FORMERR)
    read = _read_question(data)
    if read is None:
        return bare_error(data, wire.FORMERR)
    qend, name_wire = read
    qtype, qclass = struct.unpack("!HH", data[qend - 4 : qend])
    edns, do, payload, version = False, False, 0, 0
    if arcount:
        opts = None if arcount > _MAX_ADDITIONAL else _opt_records(data, qend, arcount)
        if opts is None or len(opts) > 1:
            # The question is sound; the fault is in the additional section (RFC 6891
            # 7: the minimal reply is the header, the question and an OPT).
            return bare_error(data, wire.FORMERR, data[wire.HEADER_LEN : qend])
        if opts:
            edns = True
            payload, ttl = opts[0]
            version = (ttl >> 16) & 0xFF
            do = bool(ttl & wire.EDNS_DO)
    question = Question(
        qid=data[:2],
        flags=flags,
        question=data[wire.HEADER_LEN : qend],
        key=name_wire + data[qend - 4 : qend],
        qtype=qtype,
        qclass=qclass,
        edns=edns,
        do=do,
        payload=payload,
    )
    if version != 0:
        return badvers(question)
    return question


def badvers(q: Question) -> bytes:
    """RFC 6891: an unknown EDNS version gets BADVERS and our OPT (version 0)."""
    flags = wire.FLAG_QR | (q.flags & _ECHOED)
    opt = wire.opt_record(do=q.do, ext_rcode=wire.BADVERS >> 4)
    return wire.header(q.qid, flags, 1, 0, 0, 1) + q.question + opt


_new_tuple = tuple.__new__


_REFUSED = prepared_heads(wire.REFUSED, 0, 0, aa=False, ra=False)
"""A name not ours when nothing is forwarded: no AA, and no RA (there is no recursion)."""
_REFUSED_EDE = wire.ede_option(wire.EDE_NOT_AUTHORITATIVE, "nothing is forwarded: upstream none")
"""Why a name not ours is REFUSED, for EDNS clients: ``dig`` prints
``; EDE: 20 (Not Authoritative): (nothing is forwarded: upstream none)``."""
_REFUSED_OPT = (
    b"",
    wire.opt_record(options=_REFUSED_EDE),
    wire.opt_record(do=True, options=_REFUSED_EDE),
)
"""What follows a REFUSED's question, by EDNS variant: as ``OPT_BY_VARIANT``, with the EDE."""
_INTERNAL_ERROR_EDE = wire.ede_option(wire.EDE_OTHER, "internal error in the agent (logged)")
"""Why a SERVFAIL came from a bug of ours rather than an upstream: the log has the
traceback (``dig`` prints ``; EDE: 0 (Other): (internal error in the agent (logged))``)."""
_REFUSED_SLOT = wire.REFUSED
"""Where ``QueryStats.replies`` counts REFUSED (no AA)."""
_NXDOMAIN_SLOT = 16 | wire.NXDOMAIN
"""Where ``QueryStats.replies`` counts NXDOMAIN with AA (``count_reply``'s index)."""
_pointer = wire.pointer

_DO_CD = tuple(AnswerCache.key(b"", do=bool(bits & 1), cd=bool(bits & 2)) for bits in range(4))
"""The cache key's last byte by ``DO | CD << 1``, built once (see ``AnswerCache.key``)."""
