"""DNS wire-format constants and the few encoders the compiled zone needs.

Only what tagdns writes itself lives here; decoding anything unusual is left to
dnslib on the slow path.
"""

from __future__ import annotations

import struct

HEADER_LEN = 12
MAX_UDP_PLAIN = 512
EDNS_PAYLOAD = 1232
MAX_MESSAGE = 65535
MAX_NAME = 255
"""Octets in a name's wire form, root label included (RFC 1035 3.1)."""

# Record types and classes.
TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_AAAA = 28
TYPE_DNAME = 39
TYPE_OPT = 41
TYPE_RRSIG = 46
TYPE_ANY = 255
CLASS_IN = 1
CLASS_ANY = 255

# Response codes (BADVERS is extended: 16 = upper byte 1 in the OPT, lower bits 0).
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16

# Header flag bits (the 16-bit flags word).
FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_RA = 0x0080
FLAG_AD = 0x0020
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800

# EDNS flags in the OPT TTL field.
EDNS_DO = 0x8000

POINTER_TO_QNAME = b"\xc0\x0c"
"""A compression pointer to the question name, which always starts at offset 12."""


_LENGTH_BYTES = [bytes((length,)) for length in range(256)]


def encode_name(name: str) -> bytes:
    """Wire form of a dotted name (no trailing dot needed); labels must be valid already."""
    if name and "." not in name:  # one label, the usual tag value: no split and join
        return _LENGTH_BYTES[len(name)] + name.encode("ascii") + b"\x00"
    labels = name.rstrip(".").encode("ascii").split(b".")
    return b"".join([_LENGTH_BYTES[len(label)] + label for label in labels if label]) + b"\x00"


def pointer(offset: int) -> bytes:
    """A compression pointer to ``offset`` in the message."""
    return struct.pack("!H", 0xC000 | offset)


def resource_record(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    """One class-IN resource record; ``owner`` is wire bytes or a pointer."""
    return owner + struct.pack("!HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata


def opt_record(
    *, do: bool = False, ext_rcode: int = 0, payload: int = EDNS_PAYLOAD, options: bytes = b""
) -> bytes:
    """The OPT pseudo-record we answer with: our payload size, version 0, DO echoed,
    and ``options`` (already encoded, as ``ede_option`` does) as its data."""
    return (
        b"\x00"
        + struct.pack(
            "!HHBBHH", TYPE_OPT, payload, ext_rcode, 0, EDNS_DO if do else 0, len(options)
        )
        + options
    )


OPTION_EDE = 15
"""Extended DNS Error (RFC 8914)."""
EDE_OTHER = 0
EDE_NOT_AUTHORITATIVE = 20
"""RFC 8914 4.21: not authoritative for the name, and recursion is not available."""
EDE_NO_REACHABLE_AUTHORITY = 22


def ede_option(code: int, text: str = "") -> bytes:
    """An Extended DNS Error option: the INFO-CODE and an EXTRA-TEXT in UTF-8 (not
    NUL-terminated), for the OPT of a reply (RFC 8914 section 2)."""
    extra = text.encode()
    return struct.pack("!HHH", OPTION_EDE, 2 + len(extra), code) + extra


def header(qid: bytes, flags: int, qd: int, an: int, ns: int, ar: int) -> bytes:
    """A 12-byte header; ``qid`` is the client's two ID bytes, copied as they came."""
    return qid + struct.pack("!HHHHH", flags, qd, an, ns, ar)


def soa_rdata(zone: str, serial: int, negative_ttl: int) -> bytes:
    """A synthetic SOA: its minimum is the negative TTL resolvers cache NODATA/NXDOMAIN for."""
    mname = encode_name(f"tagdns.{zone}")
    rname = encode_name(f"hostmaster.{zone}")
    return (
        mname + rname + struct.pack("!IIIII", serial & 0xFFFFFFFF, 3600, 600, 86400, negative_ttl)
    )


OPT_PLAIN = opt_record(do=False)
OPT_DO = opt_record(do=True)
OPT_BY_VARIANT = (b"", OPT_PLAIN, OPT_DO)
"""What follows a reply's sections: nothing without EDNS, our OPT, or our OPT with DO."""
