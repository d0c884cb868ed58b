"""Per-query accounting for the metrics: queries by type, replies by RCODE and ownership.

Counting sits on the hot path, so it is a few list increments and nothing else:

- the responder's fast path, which answers owned names with NOERROR and AA=1,
  adds one to ``fast_owned[QTYPE]`` and nothing more (its RCODE and AA are implied);
- every other reply (slow path, cached forwarded answers, forwarded replies) is
  counted by ``count`` / ``count_reply``: QTYPE into ``qtypes``, AA and RCODE into
  ``replies``.

Everything is summed into readable figures only when metrics are scraped
(``snapshot``), from another thread: that side only reads and copies the lists.
"""

from __future__ import annotations

from dataclasses import dataclass

QTYPE_SLOTS = 257
QTYPE_OTHER = 256
"""The last slot of ``qtypes``: QTYPEs of 256 and above, and unreadable questions."""
REPLY_SLOTS = 32
"""``replies`` is indexed by ``AA << 4 | RCODE`` (the header's four RCODE bits)."""
_HEADER_LEN = 12
_FLAG_AA_BYTE = 0x04
"""AA in the third octet of a message (the high byte of the flags word)."""


class QueryStats:
    """Plain-int counters shared by every Responder the agent installs and by its server."""

    __slots__ = ("fast_owned", "internal_errors", "qtypes", "replies")

    def __init__(self) -> None:
        self.fast_owned = [0] * 256
        """Fast-path answers for owned names, by QTYPE (always below 256 there): NOERROR, AA."""
        self.qtypes = [0] * QTYPE_SLOTS
        """Every other query by QTYPE, slot 256 for the rest."""
        self.replies = [0] * REPLY_SLOTS
        """Every other reply by ``AA << 4 | RCODE``."""
        self.internal_errors = 0
        """Queries a bug of ours turned into SERVFAIL (the responder's error policy)."""

    def count(self, query: bytes, reply: object) -> None:
        """Account for one query answered off the fast path (``reply`` may be a Question).

        A message dropped unanswered (None: too short, or a response) is no query: the
        server counts it as dropped."""
        if reply is None:
            return
        self.qtypes[query_type_slot(query)] += 1
        if reply.__class__ is bytes:
            self.count_reply(reply)

    def count_owned(self, qtype_high: int, qtype_low: int) -> None:
        """Account for a fast-path owned answer of any type (NODATA): NOERROR, AA."""
        if qtype_high:
            self.qtypes[QTYPE_OTHER] += 1
            self.replies[16] += 1
        else:
            self.fast_owned[qtype_low] += 1

    def count_reply(self, reply: bytes) -> None:
        """Account for a reply sent later (a forwarded question's answer)."""
        if len(reply) >= _HEADER_LEN:
            self.replies[(reply[2] & _FLAG_AA_BYTE) << 2 | reply[3] & 15] += 1

    def snapshot(self) -> QueryCounts:
        """Readable totals; safe to call from another thread (lists are copied first)."""
        fast = list(self.fast_owned)
        qtypes = list(self.qtypes)
        replies = list(self.replies)
        owned_fast = sum(fast)
        by_type: dict[int, int] = {}
        for qtype in range(256):
            total = fast[qtype] + qtypes[qtype]
            if total:
                by_type[qtype] = total
        by_rcode: dict[int, int] = {}
        for index, total in enumerate(replies):
            if total:
                by_rcode[index & 15] = by_rcode.get(index & 15, 0) + total
        if owned_fast:
            by_rcode[0] = by_rcode.get(0, 0) + owned_fast
        return QueryCounts(
            by_type=by_type,
            other_types=qtypes[QTYPE_OTHER],
            by_rcode=by_rcode,
            owned=owned_fast + sum(replies[16:]),
        )


@dataclass(frozen=True)
class QueryCounts:
    by_type: dict[int, int]
    other_types: int
    """Queries with a QTYPE of 256 or more, or whose question could not be read."""
    by_rcode: dict[int, int]
    owned: int
    """Replies with AA=1: answered from the view (data, NODATA, or NXDOMAIN under the zone)."""


def query_type_slot(query: bytes) -> int:
    """The ``qtypes`` slot of a query: its QTYPE when below 256, else ``QTYPE_OTHER``.

    The QTYPE follows the first zero octet after the header (the question name's
    root label); a name holding a zero octet inside a label is miscounted, never
    misread beyond the message.
    """
    end = query.find(0, _HEADER_LEN) + 2
    if _HEADER_LEN + 1 < end < len(query) and not query[end - 1]:
        return query[end]
    return QTYPE_OTHER


_TYPE_NAMES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    43: "DS",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    50: "NSEC3",
    52: "TLSA",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    252: "AXFR",
    251: "IXFR",
    255: "ANY",
    257: "CAA",
}
_RCODE_NAMES = (
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
)


def type_name(qtype: int) -> str:
    """Mnemonic of a record type (RFC 3597 ``TYPEn`` when it has none here)."""
    return _TYPE_NAMES.get(qtype, f"TYPE{qtype}")


def rcode_name(rcode: int) -> str:
    """Mnemonic of a header RCODE (``RCODEn`` for the unassigned ones)."""
    return _RCODE_NAMES[rcode] if 0 <= rcode < len(_RCODE_NAMES) else f"RCODE{rcode}"


_OCTET_TEXT = tuple(
    chr(octet) if 0x21 <= octet <= 0x7E and octet not in (0x2E, 0x5C) else f"\\{octet:03d}"
    for octet in range(256)
)
"""How each octet of a label is written in the query log: itself if printable, else ``\\DDD``."""
_PLAIN_OCTETS = bytes(octet for octet, text in enumerate(_OCTET_TEXT) if len(text) == 1)
"""The octets written as themselves: a label of only these (almost every real one)
is decoded whole."""


def _name_text(message: bytes, position: int) -> tuple[str, int] | None:
    """The question name at ``position`` as text, and the offset after it; None if malformed."""
    labels: list[str] = []
    size = len(message)
    while position < size:
        length = message[position]
        if length == 0:
            return (".".join(labels) + "." if labels else "."), position + 1
        if length > 63 or position + 1 + length > size:
            return None
        raw = message[position + 1 : position + 1 + length]
        if not raw.translate(None, _PLAIN_OCTETS):
            labels.append(raw.decode("ascii"))
        else:
            labels.append("".join(map(_OCTET_TEXT.__getitem__, raw)))
        position += 1 + length
    return None


def describe_reply(reply: bytes) -> tuple[str, str, str]:
    """(name, type, rcode) of a reply for the query log; ``?`` where the reply has no question.

    Non-printable octets and dots inside labels are escaped as ``\\DDD`` (RFC 1035
    master-file style), so a name can never break the log line it is written on.
    """
    if len(reply) < _HEADER_LEN:
        return "?", "?", "?"
    rcode = rcode_name(reply[3] & 15)
    if reply[4:6] != b"\x00\x01":
        return "?", "?", rcode
    parsed = _name_text(reply, _HEADER_LEN)
    if parsed is None or parsed[1] + 2 > len(reply):
        return "?", "?", rcode
    name, end = parsed
    return name, type_name(reply[end] << 8 | reply[end + 1]), rcode
