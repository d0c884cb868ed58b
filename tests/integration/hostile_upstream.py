"""A scriptable, hostile upstream DNS server for the forwarding tests.

Real UDP and TCP sockets on ``127.0.0.1`` (one port for both, chosen by the
kernel), served by plain threads so it works for an agent in this process or in
a subprocess alike. Each name can be given a ``Mode``: answer normally from a
small table, stay silent, answer garbage, REFUSED or SERVFAIL, TC=1 over UDP
with the whole answer over TCP, or send a poisoned reply first (wrong ID, wrong
question, or right ID and question from a different socket, i.e. another source
port) and the true answer a moment later. Every query received is recorded
with its ID and source port, so tests can assert IDs vary and each upstream
query comes from a fresh port.

Answers are deliberately "loud": AA=1 and AD=1 are set and an OPT record is
appended, so the tests can check the agent does not pass those on blindly.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

from dnslib import (
    AAAA,
    CNAME,
    EDNS0,
    QTYPE,
    RCODE,
    RR,
    SOA,
    TXT,
    A,
    DNSError,
    DNSHeader,
    DNSLabel,
    DNSRecord,
    EDNSOption,
)

POISON_V4 = "6.6.6.6"
"""The address every forged reply carries: if a client ever sees it, a forgery got through."""

_TYPE_OPT = 41
_EDNS_DO = 0x8000


class Mode(enum.Enum):
    ANSWER = "answer"
    """Answer from the table; NXDOMAIN (or NODATA) with an SOA when the name is absent."""
    SILENT = "silent"
    """Never answer, over UDP or TCP."""
    GARBAGE = "garbage"
    """Junk datagrams: short, and with our ID but unparsable sections; never a real answer."""
    REFUSED = "refused"
    SLOW_REFUSED = "slow-refused"
    """REFUSED after ``delay``."""
    SERVFAIL = "servfail"
    TRUNCATE = "truncate"
    """TC=1 and no records over UDP; the whole answer over TCP."""
    WRONG_ID_FIRST = "wrong-id-first"
    """A poisoned reply with another ID, then the true one after ``delay``."""
    WRONG_QUESTION_FIRST = "wrong-question-first"
    """A poisoned reply with our ID but another question, then the true one after ``delay``."""
    SPOOF_OTHER_PORT = "spoof-other-port"
    """A poisoned reply, right ID and question, from another socket (another source port);
    the true one after ``delay``."""
    SLOW = "slow"
    """The true answer after ``delay``."""
    DROP_FIRST = "drop-first"
    """Silent for the first query of the name (a lost datagram), answers the ones after."""
    CUT_TC = "cut-tc"
    """Over UDP the whole answer cut to ``CUT_AT`` bytes, mid-record, with TC=1; over TCP
    the whole answer."""
    BARE_REFUSED = "bare-refused"
    """REFUSED as a bare header: no question section (QDCOUNT=0), no OPT."""
    BADVERS = "badvers"
    """An empty NOERROR whose OPT carries the RCODE's upper bits: BADVERS (16)."""
    FORMERR_NO_OPT = "formerr-no-opt"
    """FORMERR without an OPT to every query, with EDNS or without."""
    BLOCKED = "blocked"
    """The true answer (NXDOMAIN for a name not in the table), its OPT carrying an
    Extended DNS Error 15 (Blocked) with ``BLOCKED_TEXT``, as a filtering resolver says."""
    SERVFAIL_EDE = "servfail-ede"
    """SERVFAIL whose OPT carries an Extended DNS Error: ``EDE_CODE`` and ``EDE_TEXT``."""
    NO_EDNS = "no-edns"
    """A server without EDNS: FORMERR without an OPT to a query with one, and the true
    answer (without an OPT) to a plain query."""


CUT_AT = 300
EDE_CODE = 6
"""DNSSEC Bogus (RFC 8914), as a validating resolver says it."""
EDE_TEXT = "signature expired"
BLOCKED_TEXT = "blocked by policy"


@dataclass(frozen=True)
class Received:
    """One query as the upstream saw it."""

    transport: str
    """``udp`` or ``tcp``."""
    qid: int
    port: int
    """The sender's source port."""
    name: str
    """The question name as sent (letter case kept), without the trailing dot."""
    qtype: int
    rd: bool
    ad: bool
    cd: bool
    edns: bool
    do: bool
    payload: int
    at: float
    """time.monotonic() on arrival."""


@dataclass
class _Record:
    rtype: str
    value: str
    ttl: int


@dataclass
class HostileUpstream:
    """Start with ``with HostileUpstream() as up:`` (or ``start``/``stop``)."""

    mode: Mode = Mode.ANSWER
    """The mode for names without a rule of their own."""
    delay: float = 0.15
    """Seconds between a poisoned reply and the true one (and for ``SLOW``)."""
    soa_ttl: int = 300
    soa_minimum: int = 60
    rules: dict[str, Mode] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _table: dict[str, list[_Record]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _udp: socket.socket | None = None
    _tcp: socket.socket | None = None
    _spoofer: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _timers: list[threading.Timer] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)

    # -- scripting ---------------------------------------------------------------------------

    def add(self, name: str, rtype: str, value: str, ttl: int = 300) -> None:
        """A record the upstream answers with (``A``, ``AAAA``, ``TXT`` or ``CNAME``)."""
        self._table.setdefault(_norm(name), []).append(_Record(rtype, value, ttl))

    def script(self, name: str, mode: Mode) -> None:
        self.rules[_norm(name)] = mode

    def queries(self, name: str | None = None, transport: str | None = None) -> list[Received]:
        """Queries received so far, optionally for one name (any case) or one transport."""
        with self._lock:
            found = list(self.received)
        if name is not None:
            found = [q for q in found if _norm(q.name) == _norm(name)]
        if transport is not None:
            found = [q for q in found if q.transport == transport]
        return found

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> HostileUpstream:
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            break
        else:  # pragma: no cover
            raise OSError("no port free for both UDP and TCP")
        tcp.listen(64)
        udp.settimeout(0.1)
        tcp.settimeout(0.1)
        self._udp, self._tcp, self.port = udp, tcp, port
        self._spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._spoofer.bind(("127.0.0.1", 0))
        for target in (self._serve_udp, self._accept_tcp):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for timer in list(self._timers):
            timer.cancel()
        for thread in self._threads:
            thread.join(timeout=2)
        for sock in (self._udp, self._tcp, self._spoofer):
            if sock is not None:
                sock.close()

    def __enter__(self) -> HostileUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- serving -----------------------------------------------------------------------------

    def _serve_udp(self) -> None:
        assert self._udp is not None
        while not self._stopping.is_set():
            try:
                data, addr = self._udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            for delay, reply, via_spoofer in self._replies(data, "udp", addr[1]):
                self._send_udp(reply, addr, delay, via_spoofer)

    def _send_udp(self, reply: bytes, addr: tuple[str, int], delay: float, spoof: bool) -> None:
        sock = self._spoofer if spoof else self._udp
        assert sock is not None

        def send() -> None:
            if not self._stopping.is_set():
                with contextlib.suppress(OSError):
                    sock.sendto(reply, addr)

        if delay <= 0:
            send()
            return
        timer = threading.Timer(delay, send)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _accept_tcp(self) -> None:
        assert self._tcp is not None
        while not self._stopping.is_set():
            try:
                conn, addr = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve_tcp, args=(conn, addr[1]), daemon=True)
            thread.start()

    def _serve_tcp(self, conn: socket.socket, port: int) -> None:
        conn.settimeout(0.2)
        with conn:
            buffer = b""
            while not self._stopping.is_set():
                try:
                    chunk = conn.recv(65535)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while len(buffer) >= 2 and len(buffer) >= 2 + struct.unpack("!H", buffer[:2])[0]:
                    length = struct.unpack("!H", buffer[:2])[0]
                    message, buffer = buffer[2 : 2 + length], buffer[2 + length :]
                    for delay, reply, _spoof in self._replies(message, "tcp", port):
                        if delay > 0:
                            time.sleep(delay)
                        try:
                            conn.sendall(struct.pack("!H", len(reply)) + reply)
                        except OSError:
                            return

    # -- deciding what to send -------------------------------------------------------------

    def _replies(self, data: bytes, transport: str, port: int) -> list[tuple[float, bytes, bool]]:
        """(delay, bytes, from the spoofing socket) for each datagram to send back."""
        try:
            query = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError, struct.error, UnicodeError):
            return []
        if not query.questions:
            return []
        question = query.q
        opt = next((rr for rr in query.ar if rr.rtype == _TYPE_OPT), None)
        name = str(question.qname).rstrip(".")
        with self._lock:
            self.received.append(
                Received(
                    transport=transport,
                    qid=query.header.id,
                    port=port,
                    name=name,
                    qtype=question.qtype,
                    rd=bool(query.header.rd),
                    ad=bool(query.header.ad),
                    cd=bool(query.header.cd),
                    edns=opt is not None,
                    do=bool(opt is not None and opt.ttl & _EDNS_DO),
                    payload=opt.rclass if opt is not None else 0,
                    at=time.monotonic(),
                )
            )
        mode = self.rules.get(_norm(name), self.mode)
        true = self._answer(query)
        if mode is Mode.SILENT:
            return []
        if mode is Mode.DROP_FIRST and len(self.queries(name)) == 1:
            return []
        if mode is Mode.REFUSED:
            return [(0, self._error(query, RCODE.REFUSED), False)]
        if mode is Mode.SLOW_REFUSED:
            return [(self.delay, self._error(query, RCODE.REFUSED), False)]
        if mode is Mode.SERVFAIL:
            return [(0, self._error(query, RCODE.SERVFAIL), False)]
        if mode is Mode.GARBAGE:
            return [(0, reply, False) for reply in _garbage(data)]
        if mode is Mode.TRUNCATE and transport == "udp":
            cut = query.reply()
            cut.header.tc = 1
            return [(0, _with_opt(cut, query), False)]
        if mode is Mode.SLOW:
            return [(self.delay, true, False)]
        if mode is Mode.CUT_TC and transport == "udp":
            cut = bytearray(true[:CUT_AT])
            cut[2] |= 0x02  # TC
            return [(0, bytes(cut), False)]
        if mode is Mode.BARE_REFUSED:
            return [
                (0, data[:2] + struct.pack("!HHHHH", 0x8000 | RCODE.REFUSED, 0, 0, 0, 0), False)
            ]
        if mode is Mode.BADVERS:
            reply = query.reply()
            reply.add_ar(EDNS0(udp_len=1232, ext_rcode=1))
            return [(0, bytes(reply.pack()), False)]
        if mode is Mode.BLOCKED:
            blocked = DNSRecord.parse(true)
            for record in blocked.ar:
                if record.rtype == _TYPE_OPT:
                    record.rdata = [EDNSOption(15, struct.pack("!H", 15) + BLOCKED_TEXT.encode())]
            return [(0, bytes(blocked.pack()), False)]
        if mode is Mode.SERVFAIL_EDE:
            reply = query.reply()
            reply.header.rcode = RCODE.SERVFAIL
            reply.header.aa = 0
            ede = EDNSOption(15, struct.pack("!H", EDE_CODE) + EDE_TEXT.encode())
            reply.add_ar(EDNS0(udp_len=1232, opts=[ede]))
            return [(0, bytes(reply.pack()), False)]
        if mode is Mode.FORMERR_NO_OPT:
            return [(0, self._error(query, RCODE.FORMERR, opt=False), False)]
        if mode is Mode.NO_EDNS:
            if opt is not None:
                return [(0, self._error(query, RCODE.FORMERR, opt=False), False)]
            return [(0, true, False)]
        if mode is Mode.WRONG_ID_FIRST:
            forged = self._poisoned(query)
            forged.header.id = query.header.id ^ 0x5A5A
            return [(0, bytes(forged.pack()), False), (self.delay, true, False)]
        if mode is Mode.WRONG_QUESTION_FIRST:
            forged = self._poisoned(query, name="evil." + name)
            return [(0, bytes(forged.pack()), False), (self.delay, true, False)]
        if mode is Mode.SPOOF_OTHER_PORT and transport == "udp":
            forged = self._poisoned(query)
            return [(0, bytes(forged.pack()), True), (self.delay, true, False)]
        return [(0, true, False)]

    def _answer(self, query: DNSRecord) -> bytes:
        question = query.q
        owner = question.qname
        records = self._table.get(_norm(str(owner)), [])
        reply = query.reply()  # QR, AA=1, RA=1, RD copied
        # As a validating resolver does (RFC 6840 5.7): AD only to a query with AD or DO.
        opt = next((rr for rr in query.ar if rr.rtype == _TYPE_OPT), None)
        reply.header.ad = int(bool(query.header.ad or (opt is not None and opt.ttl & _EDNS_DO)))
        # A CNAME is followed within the table, as a recursive resolver follows it;
        # a chain ending at a name the table lacks is NXDOMAIN with the chain.
        for _ in range(8):
            alias = next((r for r in records if r.rtype == "CNAME"), None)
            if alias is None or QTYPE.get(question.qtype) == "CNAME":
                break
            reply.add_answer(RR(owner, QTYPE.CNAME, ttl=alias.ttl, rdata=CNAME(alias.value)))
            owner = DNSLabel(alias.value)
            records = self._table.get(_norm(alias.value), [])
        wanted = [r for r in records if QTYPE.get(question.qtype) == r.rtype]
        for record in wanted:
            reply.add_answer(
                RR(owner, QTYPE.reverse[record.rtype], ttl=record.ttl, rdata=_rdata(record))
            )
        if not wanted:
            if not records:
                reply.header.rcode = RCODE.NXDOMAIN
            zone = "example.test"
            reply.add_auth(
                RR(
                    zone,
                    QTYPE.SOA,
                    ttl=self.soa_ttl,
                    rdata=SOA(
                        "ns." + zone, "hostmaster." + zone, (1, 3600, 600, 86400, self.soa_minimum)
                    ),
                )
            )
        return _with_opt(reply, query)

    def _poisoned(self, query: DNSRecord, name: str | None = None) -> DNSRecord:
        qname = name or str(query.q.qname)
        forged = DNSRecord(
            DNSHeader(id=query.header.id, qr=1, aa=1, ra=1, rd=query.header.rd),
            q=query.q if name is None else DNSRecord.question(qname, "A").q,
        )
        forged.add_answer(RR(qname, QTYPE.A, ttl=86400, rdata=A(POISON_V4)))
        return forged

    def _error(self, query: DNSRecord, rcode: int, *, opt: bool = True) -> bytes:
        reply = query.reply()
        reply.header.rcode = rcode
        reply.header.aa = 0
        return _with_opt(reply, query) if opt else bytes(reply.pack())


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


def _rdata(record: _Record) -> A | AAAA | TXT | CNAME:
    if record.rtype == "CNAME":
        return CNAME(record.value)
    if record.rtype == "A":
        return A(record.value)
    if record.rtype == "AAAA":
        return AAAA(record.value)
    return TXT(record.value)


def _with_opt(reply: DNSRecord, query: DNSRecord) -> bytes:
    """The reply with an OPT appended when the query had one (DO echoed)."""
    opt = next((rr for rr in query.ar if rr.rtype == _TYPE_OPT), None)
    if opt is not None:
        reply.add_ar(EDNS0(udp_len=1232, flags="do" if opt.ttl & _EDNS_DO else ""))
    return bytes(reply.pack())


def _garbage(query: bytes) -> Iterable[bytes]:
    """Replies that must never be taken for an answer."""
    qid = query[:2]
    question_end = query.find(b"\x00", 12) + 5
    question = query[12:question_end]
    header = qid + struct.pack("!HHHHH", 0x8180, 1, 3, 0, 0)
    yield b"\x00\x01\x02"  # shorter than a header
    yield qid + b"\x81\x80" + b"\xff" * 40  # our ID, nonsense counts
    yield header + question + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x00\x00\x04\x06"  # cut short
    yield header + question + b"\xc0\xff" * 8  # pointers to nowhere
