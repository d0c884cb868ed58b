"""The fuzz targets: one check per hostile-input surface, bytes in, a bug raised out.

Each check runs the production function on the input and then asserts what must
hold whatever the input was. An input is "fine" when the function returns or
raises its documented error (DocumentError, HostsFileError); anything else that
escapes is a bug, and so is an oracle failure:

- ``respond``: ``Responder.respond``, the agent's whole DNS behaviour, over five
  responders (region view, forwarding with a warm answer cache, authoritative,
  authoritative forwarding, public view). A reply must be one well-formed DNS
  message (read by the independent ``fuzz.wirecheck``), echo ID, opcode, RD and
  the question, fit the client's UDP limit, never be SERVFAIL (the responder's
  sign of an internal error) and equal what the slow path gives; no error may be
  logged.
- ``reply``: ``parse_reply`` on an upstream's bytes, then the cache and the
  re-rendering for a client: whatever is accepted must re-render as a
  well-formed message holding the same records.
- ``document``: ``parse_document``; the canonical reader (the agent's fast path)
  must read the same document or decline; an accepted document must round-trip to the
  same canonical bytes, compile for every view, answer each of its names over
  the wire with exactly the view's addresses, and render as hosts text.
- ``hosts``: ``merge_hosts`` on any file content: every byte outside the managed
  block is kept, the block is exactly the rendered view, a second merge changes
  nothing; refusals only for files with (damaged) markers.
- ``reload``: ``load_document`` of any bytes after the engine tests' fleet, once
  given the fleet's load (so it may rebuild only the changed names) and once
  not: the two must give the same zone, view and facts, or the same refusal.
"""

from __future__ import annotations

import contextlib
import logging
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, SOA, TXT, A, DNSRecord

from fuzz import mutate
from fuzz.wirecheck import Malformed, Message, comparable, parse_message
from resolver.core import wire
from resolver.core.cache import AnswerCache, render_answer
from resolver.core.canonical_reader import read_canonical
from resolver.core.document import MappingDocument, decode_document, parse_document
from resolver.core.guards import check_serial, check_shrink
from resolver.core.hosts_merge import (
    find_block,
    has_markers,
    merge_hosts,
    remove_block,
    render_dnsmasq,
    render_hosts_block,
)
from resolver.core.owned_target import complete_with_owned
from resolver.core.pipeline import LoadedZone, ZoneSettings, compile_document, load_document
from resolver.core.responder import Question, Responder, parse_query
from resolver.core.upstream_reply import (
    UpstreamAnswer,
    aged_sections,
    capped,
    failed,
    parse_reply,
)
from resolver.core.views import PUBLIC, CrossRegion, View, build_view
from resolver.errors import DocumentError, HostsFileError, TagdnsError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MAPPING = ROOT / "conf" / "example-mapping.json"
FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"
CRASHERS_DIR = FUZZ_DIR / "crashers"

_QR, _TC, _AA, _RD = 0x8000, 0x0200, 0x0400, 0x0100
_OPCODE = 0x7800


class InternalError(AssertionError):
    """The code under test logged an error: an exception it caught and turned into SERVFAIL."""


class _Collector(logging.Handler):
    """Keeps tagdns's error records while a check runs (and nothing otherwise).

    Attached once, never detached, and propagation is left alone: importing this
    module (pytest collects it) must not change what other tests' caplog sees.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.active = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.active:
            self.records.append(record)


_COLLECTOR = _Collector()
logging.getLogger("tagdns").addHandler(_COLLECTOR)


@contextlib.contextmanager
def no_errors_logged() -> Iterator[None]:
    """Fail when tagdns logs an error meanwhile (its catch-all handlers log, then SERVFAIL)."""
    _COLLECTOR.records.clear()
    _COLLECTOR.active = True
    try:
        yield
    finally:
        _COLLECTOR.active = False
    if _COLLECTOR.records:
        record = _COLLECTOR.records[0]
        detail = ""
        if record.exc_info is not None:
            detail = "\n" + logging.Formatter().formatException(record.exc_info)
        _COLLECTOR.records.clear()
        raise InternalError(f"logged: {record.getMessage()}{detail}")


# -- the zones and caches the wire targets run against -------------------------------------

_FIXED_CLOCK = 1_000_000.0


def _clock() -> float:
    return _FIXED_CLOCK


def _fleet_document() -> MappingDocument:
    # The engine tests' fleet: multi-instance names, a reply too big for 512 octets,
    # an empty non-terminal, a remote name, IPv6 and shared reverse names.
    from tests.core.dns_helpers import fleet_document

    return fleet_document()


def _upstream_reply(name: str, qtype: str, records: list[RR], *, rcode: int = 0) -> bytes:
    query = DNSRecord.question(name, qtype)
    query.header.id = 0x4242
    reply = query.reply()
    reply.header.aa = 0
    reply.header.rcode = rcode
    for record in records:
        if rcode == RCODE.NXDOMAIN or record.rtype == QTYPE.SOA:
            reply.add_auth(record)
        else:
            reply.add_answer(record)
    return bytes(reply.pack())


def _warm_cache() -> AnswerCache:
    """A cache holding the forwarded answers the fast path may replay."""
    cache = AnswerCache(clock=_clock)
    soa = RR("example", QTYPE.SOA, ttl=300, rdata=SOA("ns.example", "h.example", (1, 2, 3, 4, 60)))
    entries = [
        ("example.com", "A", [RR("example.com", QTYPE.A, ttl=300, rdata=A("192.0.2.1"))], 0),
        ("www.example.com", "A", [RR("www.example.com", rdata=A("192.0.2.2"))] * 2, 0),
        ("nx.example", "A", [soa], RCODE.NXDOMAIN),
        ("nodata.example", "AAAA", [soa], 0),
        (
            "big.example",
            "TXT",
            [RR("big.example", QTYPE.TXT, ttl=60, rdata=TXT("x" * 200)) for _ in range(8)],
            0,
        ),
        ("example.com", "HTTPS", [RR("example.com", QTYPE.A, rdata=A("192.0.2.65"))], 0),
    ]
    for name, qtype, records, rcode in entries:
        data = _upstream_reply(name, qtype, records, rcode=rcode)
        end = data.index(b"\x00", 12) + 1
        key = data[12:end].lower() + data[end : end + 4]  # the type stays exact: 65 is "A"
        answer = parse_reply(data, data[:2], key)
        assert answer is not None, name
        for do in (False, True):
            for cd in (False, True):
                cache.put(AnswerCache.key(key, do, cd), answer)
    return cache


def _responders() -> tuple[Responder, ...]:
    document = _fleet_document()
    region = ZoneSettings(view="us-east-1", ttl=300, negative_ttl=60)
    fleet = ZoneSettings(view="us-east-1", zone="fleet.internal", authoritative=True)
    public = ZoneSettings(view=PUBLIC, forwarding=True)

    def build(settings: ZoneSettings, forwarding: bool) -> Responder:
        settings = replace(settings, forwarding=forwarding)
        zone = compile_document(document, settings).zone
        return Responder(zone, forwarding=forwarding, cache=_warm_cache())

    return (
        build(region, False),
        build(region, True),
        build(fleet, False),
        build(fleet, True),
        build(public, True),
    )


RESPONDERS = _responders()


# -- respond -------------------------------------------------------------------------------


def _question_end(data: bytes) -> int:
    position = 12
    while data[position]:
        position += data[position] + 1
    return position + 5


def check_respond(data: bytes) -> None:
    """``Responder.respond`` on any bytes: see the module docstring for the oracle."""
    responder = RESPONDERS[data[1] % len(RESPONDERS)] if len(data) > 1 else RESPONDERS[0]
    udp = not (data and data[0] & 1)  # the ID's bits choose; they are only echoed
    with no_errors_logged():
        parsed = parse_query(data)
        result = responder.respond(data, udp=udp)
        slow = responder.answer(parsed, udp=udp) if isinstance(parsed, Question) else None

    if result is None:
        assert parsed is None, "dropped although the parser made something of it"
        assert len(data) < 12 or data[2] & 0x80, "only runts and responses are dropped"
        return
    if isinstance(result, Question):
        assert responder.forwarding, "a non-forwarding responder handed a question on"
        assert result == parsed, "forwarded question differs from the parser's"
        assert data[12 : 12 + len(result.question)] == result.question
        return
    assert isinstance(result, bytes), f"unexpected result type {type(result).__name__}"
    message = parse_message(result)
    query_flags = struct.unpack("!H", data[2:4])[0]
    assert message.qid == data[:2], "ID not echoed"
    assert message.flags & _QR, "QR not set"
    assert message.flags & _OPCODE == query_flags & _OPCODE, "opcode not echoed"
    assert message.flags & _RD == query_flags & _RD, "RD not echoed"
    assert message.rcode != wire.SERVFAIL, "SERVFAIL: an internal error was caught"
    if message.flags & _TC:
        assert not message.answer, "a truncated reply carries answers"
    opts = [r for r in message.additional if r.rtype == wire.TYPE_OPT]
    if isinstance(parsed, Question):
        qend = 12 + len(parsed.question)
        assert result[12:qend] == parsed.question, "question not echoed byte for byte"
        if udp:
            assert len(result) <= parsed.udp_limit(), "reply exceeds the client's UDP limit"
        assert len(opts) == (1 if parsed.edns else 0), "OPT present iff the query had one"
        if isinstance(slow, bytes):
            assert result == slow, "fast path and slow path disagree"
        else:
            # Only a forwarded answer replayed from the cache may differ: the slow path
            # hands the question on and the forwarder replays the same cache entry.
            assert not message.flags & _AA and isinstance(slow, Question)
        if message.flags & _AA and message.question is not None:
            qname = message.question[0]
            for record in message.answer:
                if record.rtype in (wire.TYPE_A, wire.TYPE_AAAA, wire.TYPE_PTR):
                    assert record.name == qname, "owned answer for another name"
                if record.rtype == wire.TYPE_A:
                    assert len(record.rdata) == 4
                if record.rtype == wire.TYPE_AAAA:
                    assert len(record.rdata) == 16
    else:
        assert isinstance(parsed, bytes)
        if responder.zone.recursion_available:  # RA set on every reply of a forwarder
            parsed = parsed[:3] + bytes((parsed[3] | 0x80,)) + parsed[4:]
        assert result == parsed, "an error reply that is not the parser's"
        assert len(result) <= wire.MAX_UDP_PLAIN


# -- reply ---------------------------------------------------------------------------------


def _reply_key(data: bytes) -> bytes:
    """The question the reply claims to answer, lowercased, as the forwarder's key."""
    try:
        end = _question_end(data)
    except IndexError:
        return b"\x00\x00\x01\x00\x01"
    if end > len(data) or end - 12 > 4 + wire.MAX_NAME:
        return b"\x00\x00\x01\x00\x01"
    return data[12 : end - 4].lower() + data[end - 4 : end]


def check_reply(data: bytes) -> None:
    """``parse_reply`` and everything downstream of an accepted upstream reply."""
    key = _reply_key(data)
    with no_errors_logged():
        answer = parse_reply(data, data[:2], key)
    if answer is None:
        return
    kept = len(answer.ttls)
    assert len(answer.ttl_offsets) == kept == answer.an + answer.ns + answer.ar
    for offset, ttl in zip(answer.ttl_offsets, answer.ttls, strict=True):
        assert offset + 4 <= len(answer.sections), "TTL offset outside the sections"
        assert struct.unpack_from("!I", answer.sections, offset)[0] == ttl, "TTL offset wrong"
        assert 0 <= ttl <= 0x7FFFFFFF
    assert answer.lifetime is None or answer.lifetime >= 0
    aged = aged_sections(answer, 7)
    assert len(aged) == len(answer.sections)
    for offset, ttl in zip(answer.ttl_offsets, answer.ttls, strict=True):
        assert struct.unpack_from("!I", aged, offset)[0] == max(0, ttl - 7)
    limited = capped(answer, 60)
    assert all(ttl <= 60 for ttl in limited.ttls)

    cache = AnswerCache(clock=_clock)
    cache_key = AnswerCache.key(key, False)
    cache.put(cache_key, answer)
    hit = cache.get(cache_key)
    cacheable = answer.lifetime is not None and answer.lifetime > 0 and not answer.truncated
    assert (hit is not None) == cacheable, "cache stored what it must not, or lost an answer"
    if answer.truncated or failed(answer):
        # Never passed on: TC is asked again over TCP, a failure moves to the next
        # upstream or ends in SERVFAIL. Such a reply is judged by its header alone.
        assert not hit
        return

    try:
        original = parse_message(data)
    except Malformed:
        original = None  # the upstream's own bytes are odd: only "no crash" is required
    question = data[12 : 12 + len(key)]
    for variant in (0, 1, 2):
        for limit in (None, 512, 1232):
            out = render_answer(
                answer,
                answer.sections,
                qid=b"\xab\xcd",
                client_flags=_RD,
                question=question,
                variant=variant,
                limit=limit,
            )
            if limit is not None:
                assert len(out) <= max(limit, 12 + len(question) + 11)
            if original is None:
                continue
            try:
                rendered = parse_message(out)
            except Malformed as exc:
                raise AssertionError(
                    f"a well-formed upstream reply re-rendered badly: {exc}"
                ) from exc
            if rendered.flags & _TC:
                continue
            # The upstream's OPT and the additional records after it are dropped.
            additional = list(original.additional)
            cut = next((i for i, r in enumerate(additional) if r.rtype == wire.TYPE_OPT), None)
            before = [
                comparable(r) for r in (*original.answer, *original.authority, *additional[:cut])
            ]
            after = [
                comparable(r)
                for r in (*rendered.answer, *rendered.authority, *rendered.additional)
                if r.rtype != wire.TYPE_OPT
            ]
            assert before == after, "records changed on the way to the client"
    _check_completion(answer, key, question, original)


def _check_completion(
    answer: UpstreamAnswer, key: bytes, question: bytes, original: Message | None
) -> None:
    """A CNAME chain ending in a view, completed (``owned_target``): never an
    exception; a completed reply is NOERROR without AD, and when the upstream's
    reply was well-formed it parses and keeps the upstream's answer records ahead
    of the view's (its answer records are copied as they came, oddities and all)."""
    for responder in RESPONDERS:
        completed = complete_with_owned(answer, key, responder.zone)
        if completed is answer:
            continue
        assert completed.rcode == wire.NOERROR and not completed.authentic
        assert completed.an > 0 and completed.ar == 0
        out = render_answer(
            completed,
            completed.sections,
            qid=b"\xab\xcd",
            client_flags=_RD,
            question=question,
            variant=1,
            limit=None,
        )
        if original is None:
            continue
        try:
            rendered = parse_message(out)
        except Malformed as exc:
            raise AssertionError(f"a completed chain rendered badly: {exc}") from exc
        kept = [comparable(r) for r in original.answer]
        assert [comparable(r) for r in rendered.answer[: len(kept)]] == kept


# -- document ------------------------------------------------------------------------------

_ZONE_CHOICES = ("internal", "fleet.internal")


def _wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"


def check_document(data: bytes) -> None:
    """``parse_document`` and, for what it accepts, the whole way to answers and hosts text."""
    with no_errors_logged():
        read = read_canonical(data)
        try:
            document = parse_document(data)
        except DocumentError:
            assert read is None, "the canonical reader accepted what the parse refuses"
            return
    if read is not None:
        assert read.document == document, "the canonical reader read another document"
        assert read.hosts_span == decode_document(data).hosts_span, "the readers' spans differ"
    canonical = document.to_bytes()
    again = parse_document(canonical)
    assert again == document, "canonical bytes parse to another document"
    assert again.to_bytes() == canonical, "canonical bytes are not a fixed point"
    check_serial(document, document)
    check_shrink(document, document, 0.0)
    labels = [*document.regions[:2], PUBLIC]
    zone = _ZONE_CHOICES[len(data) % len(_ZONE_CHOICES)]
    for label in labels:
        settings = ZoneSettings(view=label, zone=zone, authoritative=label == PUBLIC)
        loaded = compile_document(document, settings)
        view = loaded.view
        assert len(render_hosts_block(view, "fuzz")) > 0
        render_dnsmasq(view, "fuzz")
        assert merge_hosts(None, view, "fuzz") == render_hosts_block(view, "fuzz")
        responder = Responder(loaded.zone, forwarding=False)
        for record in view.records[:4]:
            if not record.ipv4:
                continue
            query = struct.pack("!HHHHHH", 0x0101, _RD, 1, 0, 0, 0)
            query += _wire_name(record.name) + struct.pack("!HH", wire.TYPE_A, wire.CLASS_IN)
            reply = responder.respond(query, udp=False)
            assert isinstance(reply, bytes), f"{record.name}: no answer"
            message = parse_message(reply)
            got = sorted(r.rdata for r in message.answer if r.rtype == wire.TYPE_A)
            want = sorted(bytes(int(o) for o in a.split(".")) for a in record.ipv4)
            assert message.flags & _AA and got == want, f"{record.name}: answer is not the view"


# -- hosts ---------------------------------------------------------------------------------


def _views() -> tuple[View, ...]:
    document = parse_document(EXAMPLE_MAPPING.read_bytes())
    return (
        build_view(document, "us-east-1", "internal"),
        build_view(document, PUBLIC, "internal"),
        build_view(document, "eu-west-1", "fleet.internal"),
        View("us-east-1", "internal", 1, ()),
    )


VIEWS = _views()


def check_hosts(data: bytes) -> None:
    """``merge_hosts`` on any content: user bytes kept, block exact, idempotent."""
    view = VIEWS[data[0] % len(VIEWS)] if data else VIEWS[0]
    content = data[1:]
    with no_errors_logged():
        try:
            new = merge_hosts(content or None, view, "fuzz")
        except HostsFileError:
            assert has_markers(content), "refused a file without any marker"
            return
    block = render_hosts_block(view, "fuzz")
    span = find_block(new, "fuzz")
    assert span is not None, "merged file has no block"
    assert new[span.start : span.end] == block, "block is not the rendered view"
    old = find_block(content, "fuzz")
    if old is not None:
        outside = content[: old.start] + content[old.end :]
    else:
        outside = content + (b"\n" if content and not content.endswith(b"\n") else b"")
    assert new[: span.start] + new[span.end :] == outside, "a user byte changed"
    assert remove_block(new, "fuzz") == outside
    assert merge_hosts(new, view, "fuzz") == new, "a second merge changed the file"


# -- reload ---------------------------------------------------------------------------------

RELOAD_BASE = _fleet_document()
"""57 entries: one entry changed is well under the quarter a rebuild allows."""


def _reload_settings() -> tuple[ZoneSettings, ...]:
    return (
        ZoneSettings(view="us-east-1", max_shrink=0.5),
        ZoneSettings(view="eu-west-1", cross_region=CrossRegion.PRIVATE, forwarding=True),
        ZoneSettings(view=PUBLIC, zone="fleet.internal", ttl=60),
    )


RELOAD_PREVIOUS = tuple(
    (settings, load_document(RELOAD_BASE.to_bytes(), settings, keep_records=False))
    for settings in _reload_settings()
)


def _reload(data: bytes, settings: ZoneSettings, after: LoadedZone, *, rebuild: bool) -> object:
    """The load's result, or the words of its refusal; anything else escapes: a bug."""
    try:
        return load_document(
            data,
            settings,
            after.facts,
            keep_records=False,
            previous=after if rebuild else None,
        )
    except TagdnsError as exc:
        return f"{type(exc).__name__}: {exc}"


def check_reload(data: bytes) -> None:
    """A reload after the fleet: rebuilding the changed names equals loading in full."""
    for settings, previous in RELOAD_PREVIOUS:
        with no_errors_logged():
            full = _reload(data, settings, previous, rebuild=False)
            rebuilt = _reload(data, settings, previous, rebuild=True)
        assert rebuilt == full, f"{settings.view}: a rebuild differs from the full load"


# -- the registry --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    check: Callable[[bytes], None]
    max_len: int
    """Largest input the fuzzers generate (libFuzzer's -max_len)."""
    structural: Callable[[bytes, random.Random], bytes] | None = None
    """A format-aware mutation, used for part of the mutations."""
    tokens: tuple[bytes, ...] = field(default=())
    """Dictionary entries: byte strings worth inserting whole."""

    @property
    def corpus(self) -> Path:
        return CORPUS_DIR / self.name

    @property
    def crashers(self) -> Path:
        return CRASHERS_DIR / self.name


TARGETS: dict[str, Target] = {
    "respond": Target("respond", check_respond, 1024, mutate.dns_message, mutate.DNS_TOKENS),
    "reply": Target("reply", check_reply, 2048, mutate.dns_message, mutate.DNS_TOKENS),
    "document": Target(
        "document", check_document, 16384, mutate.json_document, mutate.DOCUMENT_TOKENS
    ),
    "hosts": Target("hosts", check_hosts, 1024, mutate.hosts_text, mutate.HOSTS_TOKENS),
    "reload": Target("reload", check_reload, 16384, mutate.json_document, mutate.RELOAD_TOKENS),
}
