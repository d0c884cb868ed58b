"""The agent against Debian's unbound holding the same names, reply for reply.

unbound is the reference resolver an operator would otherwise run. Both servers
run for real on loopback: ``tagdns serve`` on the example mapping's
us-east-1 view with ``--upstream none``, and unbound with ``local-data`` for the
same names (``unbound_helpers.reference_local_data``: what DESIGN.md says the
agent owns, the agent's own SOA at each apex, everything else REFUSED). Each case
sends the same query bytes to both, over UDP and over TCP; both replies are read
with dnslib (an implementation independent of both servers) and reduced to a
``Summary`` of what a client relies on.

A case either expects the two summaries to be the same or names the ``Difference``
it expects. A named difference says which fields may differ, checks that they
differ in exactly the documented way, and must show (an expectation that no longer
shows is stale and fails, so the table stays true). Anything else that differs
fails the test: a new, unintended difference cannot pass unnoticed.

Never compared: RA. unbound sets it on every reply; the agent sets it only when it
forwards (DESIGN.md, "Error replies ... RA whenever the agent forwards"), and with
``--upstream none`` it does not, which is right for a server that offers no
recursion.

The named differences, each with its reason in its ``Difference``:

- the agent's own choices (DESIGN.md): ``any-answers`` (ANY gets the owned RRsets),
  ``qclass-any`` (QCLASS * gets the IN data), ``notify-notimp``,
  ``tc-query-answered`` and ``additional-a-answered`` (lenient), ``bad-opt-formerr``
  (strict), ``error-echoes-query`` (its own error reply where
  unbound sends the query back), ``unowned-under-apex`` and ``apex-not-owned`` (it
  owns exactly the view's names and forwards the rest, where unbound's zones claim
  everything under an apex);
- unbound's own: ``soa-mname-case`` (name compression against the question) and
  ``refused-aa`` (AA on the REFUSED of its refuse zone);
- unbound's default: ``refused-ede`` (no Extended DNS Error without ``ede: yes``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import pytest
from dnslib import CLASS, QTYPE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core import wire
from tests.core.dns_helpers import header, name_wire, opt, question
from tests.integration.dns_helpers import (
    EXAMPLE_MAPPING,
    AgentProcess,
    frame,
    recv_frame,
    tcp_connect,
    tcp_exchange,
    udp_exchange,
)
from tests.integration.unbound_helpers import UNBOUND, reference_local_data, unbound

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not UNBOUND.exists(), reason=f"{UNBOUND} not installed (scripts/test installs it)"
    ),
]

VIEW = "us-east-1"
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT, HTTPS, IXFR, AXFR, ANY, CAA = (
    1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 65, 251, 252, 255, 257,
)  # fmt: skip
IN, CH, CLASS_ANY = 1, 3, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, NOTAUTH = 0, 1, 2, 3, 4, 5, 9
OPCODE_NOTIFY = 4
FLAG_AA, FLAG_TC, FLAG_RD, FLAG_Z, FLAG_AD, FLAG_CD = 0x0400, 0x0200, 0x0100, 0x40, 0x20, 0x10
COOKIE = 10
MISFRAMED = b"\x00\x0a\x00\x09abc"
"""An option whose length (9) runs past the 3 octets left in the OPT RDATA."""

# Owned names of the example mapping's us-east-1 view (conf/example-mapping.json).
V4_SHARED = "10.1.0.10.in-addr.arpa"  # 10.0.1.10, held by api and web1: reverses to api
V4_WEB2 = "20.2.0.10.in-addr.arpa"
V4_API = "21.2.0.10.in-addr.arpa"
V6_SHARED = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.1.f.1.0.0.6.2.ip6.arpa"
OWNED = (
    "web1", "web1.internal", "web2", "web2.internal", "api", "api.internal",
    "cache", "cache.internal", "db", V4_SHARED, V4_WEB2, V4_API, V6_SHARED,
)  # fmt: skip


# -- queries ---------------------------------------------------------------------------------


def make_query(
    name: str,
    qtype: int = A,
    *,
    qclass: int = IN,
    qid: int = 0x5A5A,
    rd: bool = True,
    flags: int = 0,
    opcode: int = 0,
    edns: bytes | None = None,
    additional: bytes = b"",
    answer: bytes = b"",
    authority: bytes = b"",
    qdcount: int = 1,
) -> bytes:
    """A query as raw bytes, questions and records appended as given (case kept).

    ``qdcount=0`` sends no question; ``edns`` (an OPT, see ``opt``) and
    ``additional`` (any records, OPT included) make up the additional section.
    """
    head_flags = flags | (FLAG_RD if rd else 0) | opcode << 11
    extra = (0 if edns is None else 1) + _records(additional)
    head = header(
        qid, flags=head_flags, qd=qdcount, an=_records(answer), ns=_records(authority), ar=extra
    )
    body = question(name, qtype, qclass) if qdcount else b""
    return head + body + answer + authority + (edns or b"") + additional


def _records(section: bytes) -> int:
    """How many records (``a_record``, ``edns``) ``section`` holds: its header counts."""
    count, position = 0, 0
    while position < len(section):
        position = _skip_name(section, position) + 8
        (length,) = struct.unpack_from("!H", section, position)
        position += 2 + length
        count += 1
    return count


def a_record(name: str = "web1", address: bytes = b"\x0a\x00\x01\x0a") -> bytes:
    return name_wire(name) + struct.pack("!HHIH", A, IN, 30, len(address)) + address


def option(code: int, data: bytes = b"") -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def edns(payload: int = 1232, *, do: bool = False, version: int = 0, options: bytes = b"") -> bytes:
    """An OPT record, the payload first since most cases vary only that."""
    return opt(payload=payload, do=do, version=version, options=options)


def _skip_name(data: bytes, position: int) -> int:
    """Offset past the name at ``position`` (a pointer ends it)."""
    while data[position]:
        if data[position] >= 0xC0:
            return position + 2
        position += data[position] + 1
    return position + 1


def additional_types(message: bytes) -> list[int]:
    """The TYPE of each record in a message's additional section (names skipped)."""
    answers, authorities, additionals = struct.unpack_from("!HHH", message, 6)
    position = 12 + len(question_section(message))
    types = []
    for index in range(answers + authorities + additionals):
        position = _skip_name(message, position)
        rtype, _class, _ttl, length = struct.unpack_from("!HHIH", message, position)
        position += 10 + length
        if index >= answers + authorities:
            types.append(rtype)
    return types


def question_section(message: bytes) -> bytes:
    """The question section of a message as raw bytes (QDCOUNT questions)."""
    (qdcount,) = struct.unpack_from("!H", message, 4)
    end = 12
    for _ in range(qdcount):
        end = _skip_name(message, end) + 4
    return message[12:end]


# -- replies ---------------------------------------------------------------------------------

Record = tuple[str, str, str, int, str]
"""(owner lowercased, type, class, TTL, rdata lowercased): one answer or authority record.
TTLs are compared as they are: both servers answer from static data."""


@dataclass(frozen=True)
class Opt:
    """A reply's OPT: both servers answer version 0 with their own payload, 1232."""

    version: int
    do: bool
    payload: int
    options: tuple[int, ...]


@dataclass(frozen=True)
class Summary:
    """What a client relies on in a reply; every field is compared (RA is left out)."""

    rcode: int
    """Extended: the OPT's upper bits included (BADVERS is 16)."""
    opcode: int
    qr: bool
    aa: bool
    tc: bool
    rd: bool
    cd: bool
    ad: bool
    z: bool
    counts: tuple[int, int, int, int]
    question: bytes
    """The question section's bytes as sent back: its case is part of the contract."""
    answer: frozenset[Record]
    authority: frozenset[Record]
    additional: frozenset[Record]
    """Records other than the OPT."""
    opt: Opt | None
    names_as_sent: frozenset[tuple[str, str]]
    """(type, rdata) of the SOA and PTR records with their names' case as sent:
    rdata names compare case-insensitively, but a case change is still a change."""


def summarize(reply: bytes) -> Summary:
    """dnslib's reading of a reply, flags taken from the header bytes themselves."""
    record = DNSRecord.parse(reply)
    (flags,) = struct.unpack_from("!H", reply, 2)
    opts = [rr for rr in record.ar if rr.rtype == OPT]
    first = opts[0] if opts else None
    extended = (first.ttl >> 24) << 4 if first is not None else 0

    def records(section: list[Any]) -> frozenset[Record]:
        return frozenset(
            (
                str(rr.rname).lower(),
                QTYPE.get(rr.rtype, str(rr.rtype)),
                CLASS.get(rr.rclass, str(rr.rclass)),
                rr.ttl,
                str(rr.rdata).lower(),
            )
            for rr in section
            if rr.rtype != OPT
        )

    return Summary(
        rcode=extended | flags & 0xF,
        opcode=(flags >> 11) & 0xF,
        qr=bool(flags & 0x8000),
        aa=bool(flags & FLAG_AA),
        tc=bool(flags & FLAG_TC),
        rd=bool(flags & FLAG_RD),
        cd=bool(flags & FLAG_CD),
        ad=bool(flags & FLAG_AD),
        z=bool(flags & FLAG_Z),
        counts=struct.unpack_from("!HHHH", reply, 4),
        question=question_section(reply),
        answer=records(record.rr),
        authority=records(record.auth),
        additional=records(record.ar),
        opt=None
        if first is None
        else Opt(
            version=(first.ttl >> 16) & 0xFF,
            do=bool(first.ttl & 0x8000),
            payload=first.rclass,
            options=tuple(o.code for o in first.rdata or ()),
        ),
        names_as_sent=frozenset(
            (QTYPE.get(rr.rtype), str(rr.rdata))
            for rr in [*record.rr, *record.auth]
            if rr.rtype in (SOA, PTR)
        ),
    )


@dataclass(frozen=True)
class Exchange:
    """One query and both servers' replies, raw and summarized."""

    query: bytes
    agent_raw: bytes
    unbound_raw: bytes
    agent: Summary
    unbound: Summary

    def differences(self) -> dict[str, tuple[object, object]]:
        return {
            f.name: (getattr(self.agent, f.name), getattr(self.unbound, f.name))
            for f in fields(Summary)
            if getattr(self.agent, f.name) != getattr(self.unbound, f.name)
        }


# -- the documented differences --------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A known difference: the fields it may change and the exact shape it has."""

    name: str
    reason: str
    fields: frozenset[str]
    holds: Callable[[Exchange], bool]

    def __repr__(self) -> str:
        return self.name


_SECTIONS = frozenset({"counts", "answer", "authority", "additional", "names_as_sent"})


def _answers_with_data(s: Summary) -> bool:
    return s.rcode == NOERROR and s.aa and bool(s.answer) and not s.tc


def _soa_only(section: frozenset[Record]) -> Record | None:
    """The section's one record if it is an SOA."""
    return next(iter(section)) if len(section) == 1 and next(iter(section))[1] == "SOA" else None


def _refused(s: Summary, x: Exchange) -> bool:
    """REFUSED with the question and nothing else (an OPT if the query had one)."""
    return (
        s.rcode == REFUSED
        and s.question == question_section(x.query)
        and not (s.answer or s.authority or s.additional)
    )


def _is_query_echo(x: Exchange) -> bool:
    """unbound's reply to a query that fails its header checks (worker_check_request):
    the query itself, with QR and RCODE set."""
    return x.unbound_raw[:2] == x.query[:2] and x.unbound_raw[4:] == x.query[4:]


def _agent_error(x: Exchange) -> bool:
    """The agent's own error reply: the header, the question only if it chose to keep it
    (DESIGN: when it was sound and the fault lay after it), and an OPT exactly when the
    query had one (RFC 6891 6.1.1)."""
    kept = x.agent.question
    query_had_opt = OPT in additional_types(x.query)
    return (
        kept in (b"", question_section(x.query))
        and x.agent.counts
        == (
            int(bool(kept)),
            0,
            0,
            int(query_had_opt),
        )
        and ((x.agent.opt is not None) == query_had_opt)
    )


def _same_opt_presence(x: Exchange) -> bool:
    return (x.agent.opt is None) == (x.unbound.opt is None)


# Deliberate choices of the agent (DESIGN.md), or of its ownership rules, that unbound
# does not share.

ANY_ANSWERS = Difference(
    "any-answers",
    "ANY for an owned name: the agent returns its A/AAAA/PTR, unbound NODATA (RFC 8482 allows "
    "either)",
    _SECTIONS,
    lambda x: (
        _answers_with_data(x.agent)
        and {r[1] for r in x.agent.answer} <= {"A", "AAAA", "PTR"}
        and not x.agent.authority
        and x.unbound.rcode == NOERROR
        and not x.unbound.answer
        and _soa_only(x.unbound.authority) is not None
    ),
)
QCLASS_ANY = Difference(
    "qclass-any",
    "QCLASS * is answered from the class IN data (the only class there is); unbound SERVFAILs",
    _SECTIONS | {"rcode", "aa"},
    lambda x: (
        x.agent.rcode == NOERROR
        and x.agent.aa
        and bool(x.agent.answer)
        and x.unbound.rcode == SERVFAIL
        and not (x.unbound.answer or x.unbound.authority)
    ),
)
ERROR_ECHOES_QUERY = Difference(
    "error-echoes-query",
    "a malformed query (opcode, section counts, a bad name): both send the same RCODE, but "
    "unbound sends the query itself back with QR and RCODE set, the agent its own reply: the "
    "question only when it was sound and the fault lay after it (DESIGN), an OPT when the "
    "query had one",
    _SECTIONS | {"question", "opt"},
    lambda x: (
        x.agent.rcode == x.unbound.rcode
        and x.agent.rcode in (FORMERR, NOTIMP)
        and _is_query_echo(x)
        and _agent_error(x)
        and _same_opt_presence(x)
    ),
)
BAD_OPT_FORMERR = Difference(
    "bad-opt-formerr",
    "an OPT whose options overrun its RDATA is a bad OPT: FORMERR with the question and an OPT "
    "(DESIGN, RFC 6891 7); unbound stops reading the options and answers",
    _SECTIONS | {"rcode", "aa"},
    lambda x: (
        x.agent.rcode == FORMERR
        and _agent_error(x)
        and bool(x.agent.question)
        and _answers_with_data(x.unbound)
    ),
)
TC_QUERY_ANSWERED = Difference(
    "tc-query-answered",
    "a query with TC set is answered (more lenient); unbound FORMERRs it",
    _SECTIONS | {"rcode", "aa"},
    lambda x: _answers_with_data(x.agent) and x.unbound.rcode == FORMERR,
)
ADDITIONAL_A = Difference(
    "additional-a-answered",
    "an A record beside the OPT in the additional section is skipped and the query answered "
    "(more lenient); unbound FORMERRs it (ARCOUNT > 1, the query echoed)",
    _SECTIONS | {"rcode", "aa"},
    lambda x: (
        _answers_with_data(x.agent)
        and x.unbound.rcode == FORMERR
        and _is_query_echo(x)
        and not x.agent.additional
    ),
)
NOTIFY_NOTIMP = Difference(
    "notify-notimp",
    "opcode NOTIFY: the agent implements QUERY only (NOTIMP, DESIGN); unbound REFUSES it",
    _SECTIONS | {"rcode", "question"},
    lambda x: (
        x.agent.rcode == NOTIMP
        and _agent_error(x)
        and x.unbound.rcode == REFUSED
        and _same_opt_presence(x)
    ),
)
UNOWNED_UNDER_APEX = Difference(
    "unowned-under-apex",
    "a name under an owned apex but not itself owned (x.web1, nothere.internal, a remote "
    "name's .internal, AWS's ec2.internal) is forwarded by the agent (REFUSED without an "
    "upstream; NXDOMAIN only with authoritative = true), where unbound's static zone denies it",
    _SECTIONS | {"rcode", "aa"},
    lambda x: (
        _refused(x.agent, x)
        and not x.agent.aa
        and x.unbound.rcode == NXDOMAIN
        and x.unbound.aa
        and (soa := _soa_only(x.unbound.authority)) is not None
        and DNSRecord.parse(x.query).q.qname.matchSuffix(soa[0])
    ),
)
APEX_NOT_OWNED = Difference(
    "apex-not-owned",
    "the zone apex itself is not a view name, so the agent does not own it (forwarded: REFUSED "
    "here); unbound needs the apex SOA to put it in NODATA, which makes the apex exist",
    _SECTIONS | {"rcode", "aa"},
    lambda x: (
        _refused(x.agent, x)
        and x.unbound.rcode == NOERROR
        and x.unbound.aa
        and not x.unbound.answer
        and _soa_only(x.unbound.authority) is not None
    ),
)

# The reference's own behaviour, where no configuration of unbound matches the agent.


def _zone_label_case(x: Exchange) -> bool:
    """unbound compresses the SOA's mname and rname against the question: their ``internal``
    reads as the question's last label, case included; the agent writes them lowercase."""
    label = DNSRecord.parse(x.query).q.qname.label[-1].decode()
    lowered = {(t, data.lower()) for t, data in x.unbound.names_as_sent}
    return (
        lowered == {(t, data.lower()) for t, data in x.agent.names_as_sent}
        and all(data == data.lower() for _, data in x.agent.names_as_sent)
        and all(f".{label}. " in data for t, data in x.unbound.names_as_sent if t == "SOA")
    )


SOA_MNAME_CASE = Difference(
    "soa-mname-case",
    "unbound compresses the SOA mname/rname against the question, so they take its case",
    frozenset({"names_as_sent"}),
    _zone_label_case,
)
REFUSED_AA = Difference(
    "refused-aa",
    "unbound's refuse local zone sets AA on its REFUSED (local_error_encode); the agent, "
    "authoritative for nothing it refuses, does not",
    frozenset({"aa"}),
    lambda x: _refused(x.agent, x) and not x.agent.aa and _refused(x.unbound, x) and x.unbound.aa,
)


def check(x: Exchange, expect: tuple[Difference, ...], *, require: bool = True) -> None:
    """The two replies agree except for the differences in ``expect``, each of its
    documented shape; with ``require``, each also has to show.

    Two things are held of the agent whatever unbound does: the reply carries the
    query's ID, and its question, when it has one, is the query's byte for byte.
    """
    for who, raw in (("agent", x.agent_raw), ("unbound", x.unbound_raw)):
        assert raw[:2] == x.query[:2], f"{who}'s reply has ID {raw[:2].hex()}"
    assert x.agent.question in (b"", question_section(x.query)), (
        f"the agent's question {x.agent.question!r} is not the query's"
    )
    found = x.differences()
    allowed = frozenset().union(*(d.fields for d in expect))
    unexpected = {name: pair for name, pair in found.items() if name not in allowed}
    assert not unexpected, (
        f"agent and unbound differ beyond {list(expect) or 'nothing'}:\n"
        + "\n".join(
            f"  {name}: agent={a!r}\n  {'':{len(name)}}  unbound={u!r}"
            for name, (a, u) in unexpected.items()
        )
        + f"\nquery {x.query.hex()}\nagent {x.agent_raw.hex()}\nunbound {x.unbound_raw.hex()}"
    )
    for difference in expect:
        if not found.keys() & difference.fields:
            assert not require, f"expected difference {difference.name!r} did not show: stale"
            continue
        assert difference.holds(x), (
            f"{difference.name} ({difference.reason}) does not have its documented shape:\n"
            f"  agent={x.agent}\n  unbound={x.unbound}"
        )


REFUSED_EDE = Difference(
    "refused-ede",
    "the agent's REFUSED tells an EDNS client why, EDE 20 (Not Authoritative, RFC 8914) in its "
    "OPT; unbound sends Extended DNS Errors only with ede: yes, off by default",
    frozenset({"opt"}),
    lambda x: (
        _refused(x.agent, x)
        and x.agent.opt is not None
        and x.unbound.opt is not None
        and x.agent.opt.options == (wire.OPTION_EDE,)
        and x.unbound.opt.options == ()
        and replace(x.agent.opt, options=()) == x.unbound.opt
    ),
)

# -- servers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Servers:
    """Where the agent and unbound listen; ``exchange`` asks both the same bytes."""

    agent: tuple[str, int]
    unbound: tuple[str, int]

    def exchange(self, query: bytes, transport: str) -> Exchange:
        replies = [_send(host, port, query, transport) for host, port in (self.agent, self.unbound)]
        agent, reference = replies
        assert agent is not None, f"agent gave no reply over {transport} to {query.hex()}"
        assert reference is not None, f"unbound gave no reply over {transport} to {query.hex()}"
        return Exchange(query, agent, reference, summarize(agent), summarize(reference))


def _send(host: str, port: int, query: bytes, transport: str) -> bytes | None:
    if transport == "udp":
        return udp_exchange(host, port, query)
    return tcp_exchange(host, port, query)


def agent_soa(host: str, port: int) -> tuple[int, str]:
    """TTL and zone-file text of the SOA in the agent's NODATA for ``web1 TXT``."""
    reply = udp_exchange(host, port, make_query("web1", TXT))
    assert reply is not None, "the agent did not answer the SOA probe"
    (soa,) = DNSRecord.parse(reply).auth
    return int(soa.ttl), str(soa.rdata)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The agent (``--upstream none``) and unbound with the same names, for the module."""
    work = tmp_path_factory.mktemp("vs-unbound")
    agent = AgentProcess(work, "--metrics", "none")
    try:
        soa_ttl, soa_rdata = agent_soa(agent.host, agent.port)
        lines = reference_local_data(EXAMPLE_MAPPING, VIEW, soa_rdata=soa_rdata, soa_ttl=soa_ttl)
        with unbound(lines, work) as reference:
            yield Servers((agent.host, agent.port), ("127.0.0.1", reference.port))
    finally:
        code = agent.terminate()
    assert code == 0, agent.stderr


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One row: a readable id, the query bytes, and the differences it expects."""

    id: str
    query: bytes
    expect: tuple[Difference, ...] = ()
    """Empty: the replies must be the same."""


def case(id_: str, query: bytes, *expect: Difference) -> Case:
    return Case(id_, query, expect)


WEB1_A = make_query("web1")
TWO_QUESTIONS = header(0x5A5A, flags=FLAG_RD, qd=2) + question("web1") + question("web2")
CASES = [
    # Owned names with data.
    case("A-bare", WEB1_A),
    case("A-qualified", make_query("web1.internal")),
    case("AAAA-qualified", make_query("web1.internal", AAAA)),
    case("A-two-instances", make_query("api")),
    case("A-remote-public", make_query("db")),
    case("PTR-v4-shared-address", make_query(V4_SHARED, PTR)),
    case("PTR-v4", make_query(V4_WEB2, PTR)),
    case("PTR-v6", make_query(V6_SHARED, PTR)),
    # The question is echoed byte for byte.
    case("case-A-bare", make_query("WeB1")),
    case("case-AAAA-qualified", make_query("wEb1.InTeRnAl", AAAA)),
    case("case-PTR-v4", make_query(V4_API.upper(), PTR)),
    case("case-PTR-v6", make_query(V6_SHARED.upper(), PTR)),
    # NODATA: no data of that type, SOA in authority; an apex answers its SOA.
    case("nodata-TXT-bare", make_query("web1", TXT)),
    case("nodata-MX-qualified", make_query("web1.internal", MX)),
    case("nodata-AAAA-no-v6", make_query("web2.internal", AAAA)),
    case("nodata-HTTPS", make_query("api", HTTPS)),
    case("nodata-SOA-qualified", make_query("web1.internal", SOA)),
    case("nodata-A-reverse-v4", make_query(V4_SHARED, A)),
    case("nodata-TXT-reverse-v6", make_query(V6_SHARED, TXT)),
    case("nodata-case-bare", make_query("WEB1", MX)),
    case("nodata-case-qualified", make_query("web1.INTERNAL", TXT), SOA_MNAME_CASE),
    case("SOA-bare-apex", make_query("web1", SOA)),
    case("SOA-reverse-apex", make_query(V4_WEB2, SOA)),
    # ANY and the classes.
    case("ANY-bare", make_query("web1", ANY), ANY_ANSWERS),
    # Types no record is held under: FORMERR, owned or not.
    case("OPT-as-qtype-owned", make_query("web1", OPT, edns=edns())),
    case("OPT-as-qtype-unowned", make_query("example.com", OPT)),
    case("TSIG-as-qtype-owned", make_query("web1.internal", 250)),
    case("TKEY-as-qtype-owned", make_query("web1", 249, edns=edns())),
    case("meta-128-owned", make_query("web1", 128)),
    case("MAILB-owned", make_query("web1", 253)),
    case("MAILA-unowned", make_query("example.com", 254, edns=edns())),
    case("ANY-reverse", make_query(V4_WEB2, ANY), ANY_ANSWERS),
    case("ANY-unowned", make_query("example.com", ANY), REFUSED_AA),
    case("class-ANY", make_query("web1", qclass=CLASS_ANY), QCLASS_ANY),
    case("class-CH", make_query("version.bind", TXT, qclass=CH)),
    # Names above and below owned names, and names not owned at all.
    case("above-qualified-zone-apex", make_query("internal"), APEX_NOT_OWNED),
    case("above-reverse-v4", make_query("1.0.10.in-addr.arpa", PTR), REFUSED_AA),
    case("above-reverse-v6", make_query("1.0.0.0.8.1.f.1.0.0.6.2.ip6.arpa", PTR), REFUSED_AA),
    case("below-bare", make_query("x.web1"), UNOWNED_UNDER_APEX),
    case("below-qualified", make_query("x.web1.internal"), UNOWNED_UNDER_APEX),
    case("below-reverse", make_query(f"x.{V4_SHARED}", PTR), UNOWNED_UNDER_APEX),
    case("sibling-under-zone", make_query("nothere.internal"), UNOWNED_UNDER_APEX),
    case("remote-qualified", make_query("db.internal"), UNOWNED_UNDER_APEX),
    case("aws-name", make_query("ip-10-0-0-5.ec2.internal"), UNOWNED_UNDER_APEX),
    case("remote-without-public-address", make_query("batch"), REFUSED_AA),
    case("remote-public-PTR", make_query("5.0.240.34.in-addr.arpa", PTR), REFUSED_AA),
    case("unowned-PTR-v4", make_query("99.9.0.10.in-addr.arpa", PTR), REFUSED_AA),
    case("unowned", make_query("example.com"), REFUSED_AA),
    case("unowned-root", make_query(".", NS), REFUSED_AA),
    # RD is echoed.
    case("rd0-owned", make_query("web1", rd=False)),
    case("rd0-nodata", make_query("web1", TXT, rd=False)),
    case("rd0-unowned", make_query("example.com", rd=False), REFUSED_AA),
    # EDNS: our OPT (payload 1232, version 0, DO echoed), options ignored.
    case("edns-512", make_query("web1", edns=edns(512))),
    case("edns-1232", make_query("web1.internal", AAAA, edns=edns(1232))),
    case("edns-4096", make_query("api", edns=edns(4096))),
    case("edns-DO", make_query("web1", edns=edns(do=True))),
    case("edns-DO-nodata", make_query("web1.internal", TXT, edns=edns(do=True))),
    case(
        "edns-DO-unowned",
        make_query("example.com", edns=edns(do=True)),
        REFUSED_AA,
        REFUSED_EDE,
    ),
    case("edns-cookie", make_query("web1", edns=edns(options=option(COOKIE, bytes(range(8)))))),
    case("edns-unknown-option", make_query("web1", edns=edns(options=option(65001, b"hi")))),
    case("edns-v1-BADVERS", make_query("web1", edns=edns(version=1))),
    case("edns-v1-BADVERS-unowned", make_query("example.com", edns=edns(version=1, do=True))),
    case("CD-owned", make_query("web1", flags=FLAG_CD, edns=edns())),
    case("CD-owned-nodata", make_query("web1", TXT, flags=FLAG_CD)),
    case("CD-owned-truncated", make_query("cache", flags=FLAG_CD)),
    case("CD-unowned", make_query("example.com", flags=FLAG_CD), REFUSED_AA),
    # Errors.
    case("opcode-15-NOTIMP", make_query("web1", opcode=15), ERROR_ECHOES_QUERY),
    case("opcode-15-NOTIMP-edns", make_query("web1", opcode=15, edns=edns()), ERROR_ECHOES_QUERY),
    case("opcode-NOTIFY", make_query("web1", opcode=OPCODE_NOTIFY), NOTIFY_NOTIMP),
    case("qdcount-0-edns-FORMERR", make_query("web1", qdcount=0, edns=edns())),
    case("two-OPT-FORMERR", make_query("web1", edns=edns(), additional=edns()), ERROR_ECHOES_QUERY),
    case("misframed-option", make_query("web1", edns=edns(options=MISFRAMED)), BAD_OPT_FORMERR),
    case("qdcount-2-FORMERR", TWO_QUESTIONS, ERROR_ECHOES_QUERY),
    case("label-64-octets-FORMERR", make_query("a" * 64), ERROR_ECHOES_QUERY),
    case("ancount-1-FORMERR", make_query("web1", answer=a_record()), ERROR_ECHOES_QUERY),
    case("nscount-1-FORMERR", make_query("web1", authority=a_record()), ERROR_ECHOES_QUERY),
    case("TC-set-in-query", make_query("web1", flags=FLAG_TC), TC_QUERY_ANSWERED),
    case("A-in-additional", make_query("web1", edns=edns(), additional=a_record()), ADDITIONAL_A),
    # 40 A records: 663 bytes, over 512 (TC over UDP), under 1232.
    case("40-addresses-no-edns", make_query("cache")),
    case("40-addresses-edns-512", make_query("cache", edns=edns(512))),
    case("40-addresses-edns-1232", make_query("cache", edns=edns(1232))),
    case("40-addresses-edns-payload-0-is-512", make_query("cache", edns=edns(0))),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_reply_as_unbound(servers: Servers, case: Case, transport: str) -> None:
    check(servers.exchange(case.query, transport), case.expect)


def test_the_40_address_case_truncates_over_udp_only(servers: Servers) -> None:
    """The TC cases in the table compare equal; this pins that they are a TC case at all."""
    query = make_query("cache")
    over_udp, over_tcp = servers.exchange(query, "udp"), servers.exchange(query, "tcp")
    assert over_udp.agent.tc and not over_udp.agent.answer
    assert not over_tcp.agent.tc and len(over_tcp.agent.answer) == 40


def test_twenty_pipelined_tcp_queries_on_one_connection(servers: Servers) -> None:
    """RFC 7766: 20 of the table's queries (every third row: answers, NODATA, refusals,
    errors) in one write on one connection; every reply comes back, matched by ID since
    the order may differ, each as its case expects: pipelining may not change an answer."""
    chosen = CASES[::3][:20]
    queries = {
        0x1000 + i: struct.pack("!H", 0x1000 + i) + c.query[2:] for i, c in enumerate(chosen)
    }
    replies = []
    for host, port in (servers.agent, servers.unbound):
        with tcp_connect(host, port) as sock:
            sock.sendall(b"".join(frame(q) for q in queries.values()))
            received = [recv_frame(sock) for _ in queries]
        replies.append({struct.unpack_from("!H", r)[0]: r for r in received})
    agent, reference = replies
    assert len(chosen) == 20
    assert sorted(agent) == sorted(reference) == sorted(queries)
    for (qid, query), chosen_case in zip(queries.items(), chosen, strict=True):
        summaries = summarize(agent[qid]), summarize(reference[qid])
        check(Exchange(query, agent[qid], reference[qid], *summaries), chosen_case.expect)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(
    ("name", "qtype"),
    [("web1", AXFR), ("web1.internal", AXFR), ("web1", IXFR), ("nothere.example", AXFR)],
    ids=["axfr-bare", "axfr-qualified", "ixfr-bare", "axfr-not-owned"],
)
def test_zone_transfer_requests_are_refused(
    servers: Servers, name: str, qtype: int, transport: str
) -> None:
    """A transfer the agent does not offer must not read as a successful empty one
    (RFC 5936 2.2: a transfer begins with the zone's SOA; a refusal is an error RCODE)."""
    x = servers.exchange(make_query(name, qtype), transport)
    assert x.unbound.rcode == REFUSED
    assert x.agent.rcode == REFUSED, f"agent answered {x.agent}"


# -- generated queries -----------------------------------------------------------------------

GENERATED_TYPES = (A, AAAA, PTR, TXT, MX, SOA, NS, CNAME, SRV, HTTPS, CAA)


def flip_case(name: str, mask: int) -> str:
    """``name`` with the letters whose bit is set in ``mask`` upper-cased."""
    return "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate(name))


@settings(max_examples=50, derandomize=True, deadline=None)
@given(
    name=st.sampled_from(OWNED),
    qtype=st.sampled_from(GENERATED_TYPES),
    mask=st.integers(min_value=0, max_value=2**80 - 1),
    payload=st.sampled_from([None, 512, 1232, 4096]),
    do=st.booleans(),
    rd=st.booleans(),
    transport=st.sampled_from(["udp", "tcp"]),
)
def test_generated_queries_for_owned_names_match_unbound(
    servers: Servers,
    name: str,
    qtype: int,
    mask: int,
    payload: int | None,
    do: bool,
    rd: bool,
    transport: str,
) -> None:
    """Owned names x types x case flips x EDNS x RD: the same reply from both.

    One difference is tolerated, not required: when the question's ``internal``
    label is not lowercase, unbound's SOA names take its case (``soa-mname-case``).
    """
    sent = flip_case(name, mask)
    opt_record = None if payload is None else edns(payload, do=do)
    query = make_query(sent, qtype, rd=rd, edns=opt_record, qid=mask & 0xFFFF)
    last_label = sent.rsplit(".", 1)[-1]
    tolerated = (SOA_MNAME_CASE,) if last_label.lower() == "internal" != last_label else ()
    check(servers.exchange(query, transport), tolerated, require=False)


def test_every_documented_difference_is_used() -> None:
    """A difference no case expects any more is dead documentation."""
    used = {d.name for c in CASES for d in c.expect}
    defined = {d.name for d in globals().values() if isinstance(d, Difference)}
    assert used == defined
