"""Shared helpers for the DNS engine tests: a small fixed fleet and hand-built queries.

Queries are encoded here byte by byte, independently of resolver.core.wire, so a
bug in the encoder under test cannot hide in the test's own encoder. Replies are
decoded with dnslib, an independent implementation.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import replace

from dnslib import DNSRecord

from resolver.core.document import HostEntry, MappingDocument, make_document
from resolver.core.pipeline import ZoneSettings, compile_document
from resolver.core.responder import Responder
from resolver.core.zone import CompiledZone, Prepared

HOME = "us-east-1"
AWAY = "eu-west-1"
TTL = 300
NEGATIVE_TTL = 60
SERIAL = 1764076800
CACHE_SIZE = 40
POOL_SIZE = 10


def _host(
    name: str,
    region: str,
    number: int,
    private: str,
    public: str | None,
    ipv6: tuple[str, ...] = (),
) -> HostEntry:
    return HostEntry(
        name=name,
        region=region,
        instance_id=f"i-{number:017x}",
        az=f"{region}a",
        private_ipv4=private,
        public_ipv4=public,
        ipv6=ipv6,
    )


def fleet_document() -> MappingDocument:
    """The example fleet, plus a two-label name for empty non-terminals.

    - ``api``: two local instances; one shares 10.0.1.10 and 2600:1f18:1::10 with
      ``web1``, so those addresses reverse to ``api`` (first in sorted order).
    - ``web1``: one local instance with IPv6; ``web2``: local, IPv4 only.
    - ``db``: remote (eu-west-1), public 34.240.0.5, private 10.1.1.5.
    - ``batch``: remote without a public address (left out of the public views).
    - ``cache``: 40 local instances, too many A records for 512 bytes.
    - ``blue.svc``: local; ``svc.<zone>`` is an empty non-terminal.
    - ``pool``: 10 local instances, a reply of 193 bytes (between 100 and 512).
    """
    hosts = [
        _host("api", HOME, 1, "10.0.1.10", "54.12.0.10", ("2600:1f18:1::10",)),
        _host("api", HOME, 4, "10.0.2.21", "54.12.0.21"),
        _host("web1", HOME, 1, "10.0.1.10", "54.12.0.10", ("2600:1f18:1::10",)),
        _host("web2", HOME, 3, "10.0.2.20", "54.12.0.20"),
        _host("db", AWAY, 5, "10.1.1.5", "34.240.0.5"),
        _host("batch", AWAY, 6, "10.1.2.6", None),
        _host("blue.svc", HOME, 7, "10.0.4.7", "54.12.4.7", ("2600:1f18:1::47",)),
    ]
    hosts += [
        _host("cache", HOME, 0x100 + i, f"10.0.3.{i}", f"54.12.3.{i}")
        for i in range(1, CACHE_SIZE + 1)
    ]
    hosts += [
        _host("pool", HOME, 0x200 + i, f"10.0.5.{i}", f"54.12.5.{i}")
        for i in range(1, POOL_SIZE + 1)
    ]
    return make_document(
        serial=SERIAL,
        generated_at="2025-11-25T13:20:00Z",
        tag_key="dns",
        regions=[HOME, AWAY],
        hosts=hosts,
    )


DOCUMENT = fleet_document()
SETTINGS = ZoneSettings(view=HOME, ttl=TTL, negative_ttl=NEGATIVE_TTL)


def responder(settings: ZoneSettings = SETTINGS, **changes: object) -> Responder:
    """A Responder for ``DOCUMENT`` under ``settings`` with ``changes`` applied."""
    chosen = replace(settings, **changes)  # type: ignore[arg-type]
    loaded = compile_document(DOCUMENT, chosen)
    return Responder(loaded.zone, forwarding=chosen.forwarding)


def name_wire(name: str) -> bytes:
    """Wire form of a dotted name, keeping its case (the test's own encoder)."""
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def question(name: str, qtype: int = 1, qclass: int = 1) -> bytes:
    return name_wire(name) + struct.pack("!HH", qtype, qclass)


def opt(*, payload: int = 1232, do: bool = False, version: int = 0, options: bytes = b"") -> bytes:
    """An OPT record: root owner, TYPE 41, CLASS = payload, TTL = ext-rcode/version/flags."""
    flags = 0x8000 if do else 0
    return b"\x00" + struct.pack("!HHBBHH", 41, payload, 0, version, flags, len(options)) + options


def header(
    qid: int = 0x1234,
    *,
    flags: int = 0,
    qd: int = 1,
    an: int = 0,
    ns: int = 0,
    ar: int = 0,
) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


RD = 0x0100
CD = 0x0010


def query(
    name: str,
    qtype: int = 1,
    *,
    qid: int = 0x1234,
    rd: bool = True,
    qclass: int = 1,
    edns: bytes | None = None,
    flags: int = 0,
) -> bytes:
    """A one-question query; ``edns`` is an OPT record (see ``opt``) to append."""
    head = header(qid, flags=flags | (RD if rd else 0), ar=0 if edns is None else 1)
    return head + question(name, qtype, qclass) + (edns or b"")


def parse(reply: object) -> DNSRecord:
    """dnslib's reading of a reply; fails the test if the responder did not return bytes."""
    assert isinstance(reply, bytes), f"expected reply bytes, got {reply!r}"
    return DNSRecord.parse(reply)


def reply_question(reply: bytes) -> bytes:
    """The raw question section of a reply that has exactly one question."""
    assert reply[4:6] == b"\x00\x01"
    end = 12
    while reply[end] != 0:
        end += reply[end] + 1
    return reply[12 : end + 5]


def question_of(data: bytes) -> bytes:
    """The raw question section of a query built by ``query``."""
    return reply_question(data)


class _Exploding(Mapping[bytes, Prepared]):
    """A zone index that fails on every lookup: stands in for any internal bug."""

    def __getitem__(self, key: bytes) -> Prepared:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def __len__(self) -> int:
        return 0


def broken_zone(zone: CompiledZone) -> CompiledZone:
    """``zone`` with indexes that raise on every lookup: the responder's error policy
    (SERVFAIL, logged, counted) is what a query then meets."""
    return replace(zone, answers=_Exploding(), structural=_Exploding())
