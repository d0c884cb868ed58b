"""Write the seed corpus in fuzz/corpus/: real queries, replies, documents and hosts files.

``python -m fuzz.make_corpus`` (re)generates it. Seeds come from:

- **respond**: the queries dig and kdig really send (captured on a UDP socket:
  cookies, NSID, client subnet, padding, DNSSEC OK, no EDNS, reverse), queries
  built with dnslib for every name and type shape the zone has, EDNS options,
  and hand-made compression tricks (pointer loops, pointers into the header,
  long chains, 255-octet names, 64-octet labels).
- **reply**: the replies dnsmasq really gives (A, AAAA, CNAME chains, MX, TXT,
  SRV, PTR, NXDOMAIN, NODATA, with and without EDNS), dnslib-built oddities (OPT
  before other additional records, TTLs with the top bit set, TC, Extended DNS
  Errors) and the hostile upstream's garbage.
- **document**: the example mapping, the engine tests' fleet, edge documents.
- **hosts**: typical /etc/hosts files with and without a block, CRLF, Latin-1,
  damaged markers. The first byte of a hosts seed picks the view.

Captured bytes carry random IDs, so a re-run changes those files; the corpus in
the repository is one such run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from dnslib import (
    AAAA,
    CNAME,
    EDNS0,
    MX,
    NS,
    PTR,
    QTYPE,
    RCODE,
    RR,
    SOA,
    TXT,
    A,
    DNSRecord,
    EDNSOption,
)

from fuzz.targets import CORPUS_DIR, EXAMPLE_MAPPING, RELOAD_BASE, VIEWS, _fleet_document
from resolver.core.document import HostEntry, make_document
from resolver.core.hosts_merge import merge_hosts

Seeds = dict[str, bytes]


def _free_udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3)
    return sock


# -- queries -----------------------------------------------------------------------------------

_TOOL_QUERIES = {
    "dig-plain": ["dig", "web1.internal"],
    "dig-noedns": ["dig", "+noedns", "api"],
    "dig-dnssec": ["dig", "+dnssec", "web1", "AAAA"],
    "dig-cookie-nsid-subnet": ["dig", "+cookie", "+nsid", "+subnet=192.0.2.0/24", "db"],
    "dig-subnet-v6": ["dig", "+subnet=2001:db8::/56", "cache.internal"],
    "dig-reverse": ["dig", "-x", "10.0.1.10"],
    "dig-reverse-v6": ["dig", "-x", "2600:1f18:1::10"],
    "dig-any": ["dig", "web1.internal", "ANY"],
    "dig-norecurse-ad-cd": ["dig", "+norecurse", "+adflag", "+cdflag", "example.com"],
    "dig-bufsize-512": ["dig", "+bufsize=512", "pool"],
    "dig-edns1": ["dig", "+edns=1", "web1"],
    "dig-https": ["dig", "example.com", "HTTPS"],
    "dig-mixed-case": ["dig", "WeB1.InTeRnAl"],
    "kdig-padding": ["kdig", "+padding=64", "web1.internal"],
    "kdig-nsid-cookie": ["kdig", "+nsid", "+cookie", "api"],
    "kdig-subnet": ["kdig", "+subnet=10.0.0.0/8", "web2"],
    "kdig-bufsize-max": ["kdig", "+bufsize=65535", "cache"],
    "kdig-dnssec-ptr": ["kdig", "+dnssec", "-x", "10.0.2.21"],
    "kdig-noedns-soa": ["kdig", "+noedns", "internal", "SOA"],
    "kdig-keepalive": ["kdig", "+keepalive", "+expire", "web1"],
}


def tool_queries() -> Seeds:
    """What dig and kdig really put on the wire, caught on a UDP socket."""
    seeds: Seeds = {}
    for label, command in _TOOL_QUERIES.items():
        if shutil.which(command[0]) is None:
            continue
        with _free_udp() as sock:
            port = sock.getsockname()[1]
            timing = ["+tries=1", "+timeout=1"] if command[0] == "dig" else ["+retry=0", "+time=1"]
            process = subprocess.Popen(
                [command[0], "@127.0.0.1", "-p", str(port), *timing, *command[1:]],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                seeds[label] = sock.recv(65535)
            except TimeoutError:
                pass
            finally:
                process.kill()
                process.wait()
    return seeds


def _query(name: str, qtype: str, *, edns: EDNS0 | None = None, rd: bool = True) -> bytes:
    record = DNSRecord.question(name, qtype)
    record.header.rd = int(rd)
    if edns is not None:
        record.add_ar(edns)
    return bytes(record.pack())


def built_queries() -> Seeds:
    seeds: Seeds = {}
    names = [
        "web1", "web1.internal", "api", "cache", "pool", "db", "batch", "blue.svc.internal",
        "svc.internal", "internal", "nope.internal", "example.com", "nx.example",
        "nodata.example", "big.example", "blue.svc.fleet.internal", "fleet.internal",
        "1.3.0.10.in-addr.arpa", "10.1.0.10.in-addr.arpa",
    ]  # fmt: skip
    for name in names:
        for qtype in ("A", "AAAA", "PTR", "ANY", "SOA", "MX", "TXT", "HTTPS"):
            seeds[f"q-{name}-{qtype}"] = _query(name, qtype)
        seeds[f"q-{name}-A-edns"] = _query(name, "A", edns=EDNS0(udp_len=1232))
        seeds[f"q-{name}-AAAA-do"] = _query(name, "AAAA", edns=EDNS0(udp_len=4096, flags="do"))
    options = {
        "cookie": [EDNSOption(10, bytes(range(8)))],
        "cookie-server": [EDNSOption(10, bytes(range(24)))],
        "ecs": [EDNSOption(8, struct.pack("!HBB", 1, 24, 0) + bytes([192, 0, 2]))],
        "ecs-v6": [EDNSOption(8, struct.pack("!HBB", 2, 56, 0) + bytes(7))],
        "padding": [EDNSOption(12, bytes(100))],
        "nsid": [EDNSOption(3, b"")],
        "keepalive": [EDNSOption(11, b"")],
        "unknown": [EDNSOption(65001, b"tagdns")],
        "many": [EDNSOption(c, bytes(3)) for c in (3, 8, 10, 12, 65000)],
    }
    for label, opts in options.items():
        edns = EDNS0(udp_len=1232, opts=opts)
        seeds[f"q-web1-option-{label}"] = _query("web1", "A", edns=edns)
        seeds[f"q-example-option-{label}"] = _query("example.com", "A", edns=edns)
    return seeds


def _head(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, 0, ar)


_WEB1 = b"\x04web1\x00\x00\x01\x00\x01"
_OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


def tricks() -> Seeds:
    """Hand-made messages for the parser's corners."""
    long_name = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"b" * 61 + b"\x00"  # 255 octets
    return {
        "trick-question-pointer-to-itself": _head() + b"\xc0\x0c\x00\x01\x00\x01",
        "trick-question-pointer-to-header": _head() + b"\x04web1\xc0\x00\x00\x01\x00\x01",
        "trick-additional-pointer-loop": _head(ar=1) + _WEB1 + b"\xc0\x1d" + _OPT[1:],
        "trick-additional-pointer-chain": _head(ar=1) + _WEB1 + b"\xc0\x0c" * 40 + _OPT[1:],
        "trick-opt-owner-pointer": _head(ar=1) + _WEB1 + b"\xc0\x0c" + _OPT[1:],
        "trick-two-opts": _head(ar=2) + _WEB1 + _OPT + _OPT,
        "trick-opt-rdlength-lie": _head(ar=1) + _WEB1 + _OPT[:-2] + b"\x00\x20",
        "trick-option-overrun": _head(ar=1)
        + _WEB1
        + _OPT[:-2]
        + b"\x00\x0c\x00\x0a\x00\x09"
        + b"c" * 8,
        "trick-name-255": _head() + long_name + b"\x00\x01\x00\x01",
        "trick-name-256": _head() + b"\x01c" + long_name + b"\x00\x01\x00\x01",
        "trick-label-64": _head() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
        "trick-label-type-0x40": _head() + b"\x41\x00\x00\x01\x00\x01",
        "trick-qdcount-2": _head(qd=2) + _WEB1 + _WEB1,
        "trick-qdcount-0": _head(qd=0),
        "trick-ancount-1": _head(an=1) + _WEB1,
        "trick-response": _head(flags=0x8180) + _WEB1,
        "trick-opcode-notify": _head(flags=0x2000) + _WEB1,
        "trick-opcode-15": _head(flags=0x7800) + _WEB1,
        "trick-header-only": _head(qd=0)[:12],
        "trick-runt": b"\x12\x34\x01",
        "trick-cut-in-question": _head() + b"\x04web",
        "trick-trailing-garbage": _head() + _WEB1 + b"\xde\xad\xbe\xef",
        "trick-class-any": _head() + b"\x04web1\x00\x00\x01\x00\xff",
        "trick-class-chaos": _head() + b"\x07version\x04bind\x00\x00\x10\x00\x03",
        "trick-type-opt": _head() + b"\x04web1\x00\x00\x29\x00\x01",
        "trick-empty-name": _head() + b"\x00\x00\x01\x00\x01",
    }


# -- replies -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _dnsmasq() -> Iterator[int]:
    with _free_udp() as probe:
        port = probe.getsockname()[1]
    command = [
        "/usr/sbin/dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", f"--port={port}",
        "--listen-address=127.0.0.1", "--bind-interfaces", "--user=root",
        "--address=/a.example.test/192.0.2.1", "--address=/a.example.test/2001:db8::1",
        "--host-record=multi.example.test,192.0.2.2,192.0.2.3,2001:db8::2",
        "--cname=alias.example.test,multi.example.test",
        "--cname=chain.example.test,alias.example.test",
        "--mx-host=example.test,mail.example.test,10",
        "--txt-record=example.test,\"v=spf1 -all\",\"second string\"",
        "--srv-host=_sip._udp.example.test,sip.example.test,5060,0,5",
        "--ptr-record=1.2.0.192.in-addr.arpa,a.example.test",
        "--local=/example.test/", "--local-ttl=60", "--auth-ttl=60",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        process.wait()


def dnsmasq_replies() -> Seeds:
    seeds: Seeds = {}
    if not Path("/usr/sbin/dnsmasq").exists():
        return seeds
    questions = [
        ("a.example.test", "A"), ("a.example.test", "AAAA"), ("multi.example.test", "A"),
        ("chain.example.test", "A"), ("alias.example.test", "AAAA"), ("example.test", "MX"),
        ("example.test", "TXT"), ("_sip._udp.example.test", "SRV"), ("missing.example.test", "A"),
        ("a.example.test", "MX"), ("1.2.0.192.in-addr.arpa", "PTR"), ("example.test", "ANY"),
    ]  # fmt: skip
    with _dnsmasq() as port, _free_udp() as sock:
        for name, qtype in questions:
            for edns in (None, EDNS0(udp_len=1232, flags="do")):
                query = _query(name, qtype, edns=edns)
                sock.sendto(query, ("127.0.0.1", port))
                try:
                    reply = sock.recv(65535)
                except TimeoutError:
                    continue
                suffix = "-edns" if edns is not None else ""
                seeds[f"dnsmasq-{name}-{qtype}{suffix}"] = reply
    return seeds


def _reply(name: str, qtype: str, *, qid: int = 0x4242) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    query.header.id = qid
    reply = query.reply()
    reply.header.aa = 0
    return reply


def opt_first_reply() -> bytes:
    """OPT first in the additional section, then glue whose second record points at the first.

    Legal (RFC 6891 puts OPT anywhere in the additional section); tagdns used to cut
    the OPT out from between the records, leaving the pointer aimed at the wrong bytes.
    """
    query = DNSRecord.question("example.com", "NS")
    question = bytes(query.pack())[12:]
    head = struct.pack("!HHHHHH", 0x4242, 0x8180, 1, 1, 0, 3)
    ns = b"\xc0\x0c" + struct.pack("!HHIH", 2, 1, 300, 14) + b"\x02ns\x05other\x03org\x00"
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    glue_at = 12 + len(question) + len(ns) + len(opt)
    glue_a = (
        b"\x02ns\x05other\x03org\x00" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 1])
    )
    glue_aaaa = struct.pack("!HHHIH", 0xC000 | glue_at, 28, 1, 300, 16) + bytes(15) + b"\x01"
    return head + question + ns + opt + glue_a + glue_aaaa


def extended_error_replies(soa: SOA) -> Seeds:
    """Extended DNS Errors (RFC 8914): a filtering resolver's NXDOMAIN, a validating
    one's SERVFAIL after a cookie, and an EDE too short for its INFO-CODE."""
    seeds: Seeds = {}
    r = _reply("ads.example", "A")
    r.header.rcode = RCODE.NXDOMAIN
    r.add_auth(RR("example", QTYPE.SOA, ttl=900, rdata=soa))
    r.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(15, b"\x00\x0fblocked by policy")]))
    seeds["reply-nxdomain-ede-blocked"] = bytes(r.pack())
    r = _reply("bogus.example", "A")
    r.header.rcode = RCODE.SERVFAIL
    cookie = EDNSOption(10, bytes(range(24)))
    r.add_ar(EDNS0(udp_len=1232, opts=[cookie, EDNSOption(15, b"\x00\x06sig expired")]))
    seeds["reply-servfail-cookie-ede"] = bytes(r.pack())
    r = _reply("short.example", "A")
    r.add_answer(RR("short.example", QTYPE.A, ttl=60, rdata=A("192.0.2.8")))
    r.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(15, b"\x00")]))
    seeds["reply-ede-too-short"] = bytes(r.pack())

    return seeds


def owned_chain_replies(soa: SOA) -> Seeds:
    """CNAME chains from outside that end at the fleet's names (``owned_target``): one
    link with the NXDOMAIN the upstream met, two links to a bare name, a loop."""
    seeds: Seeds = {}
    r = _reply("db.corp.example", "A")
    r.header.rcode = RCODE.NXDOMAIN
    r.add_answer(RR("db.corp.example", QTYPE.CNAME, ttl=600, rdata=CNAME("web1.internal")))
    r.add_auth(RR("internal", QTYPE.SOA, ttl=900, rdata=soa))
    seeds["reply-cname-to-owned"] = bytes(r.pack())
    r = _reply("two.corp.example", "AAAA")
    r.add_answer(RR("two.corp.example", QTYPE.CNAME, ttl=600, rdata=CNAME("mid.corp.example")))
    r.add_answer(RR("mid.corp.example", QTYPE.CNAME, ttl=300, rdata=CNAME("api")))
    seeds["reply-cname-two-links-to-owned"] = bytes(r.pack())
    r = _reply("loop.corp.example", "A")
    r.add_answer(RR("loop.corp.example", QTYPE.CNAME, ttl=60, rdata=CNAME("b.corp.example")))
    r.add_answer(RR("b.corp.example", QTYPE.CNAME, ttl=60, rdata=CNAME("loop.corp.example")))
    seeds["reply-cname-loop"] = bytes(r.pack())
    return seeds


def built_replies() -> Seeds:
    soa = SOA("ns.example", "hostmaster.example", (1, 3600, 600, 86400, 60))
    seeds: Seeds = {}

    r = _reply("www.example.com", "A")
    r.add_answer(RR("www.example.com", QTYPE.CNAME, ttl=300, rdata=CNAME("web.example.com")))
    r.add_answer(RR("web.example.com", QTYPE.A, ttl=60, rdata=A("192.0.2.10")))
    seeds["reply-cname-chain"] = bytes(r.pack())

    r = _reply("nx.example", "A")
    r.header.rcode = RCODE.NXDOMAIN
    r.add_auth(RR("example", QTYPE.SOA, ttl=900, rdata=soa))
    seeds["reply-nxdomain-soa"] = bytes(r.pack())

    r = _reply("www.example.com", "AAAA")
    r.add_answer(RR("www.example.com", QTYPE.CNAME, ttl=300, rdata=CNAME("web.example.com")))
    r.add_auth(RR("example.com", QTYPE.SOA, ttl=300, rdata=soa))
    seeds["reply-nodata-after-cname"] = bytes(r.pack())

    r = _reply("example.com", "NS")
    for i in (1, 2):
        r.add_answer(RR("example.com", QTYPE.NS, ttl=3600, rdata=NS(f"ns{i}.example.com")))
        r.add_ar(RR(f"ns{i}.example.com", QTYPE.A, ttl=3600, rdata=A(f"192.0.2.5{i}")))
        r.add_ar(RR(f"ns{i}.example.com", QTYPE.AAAA, ttl=3600, rdata=AAAA(f"2001:db8::5{i}")))
    r.add_ar(EDNS0(udp_len=1232))
    seeds["reply-ns-glue-opt-last"] = bytes(r.pack())

    r = _reply("example.com", "NS")
    r.add_ar(EDNS0(udp_len=1232))
    for i in (1, 2):
        r.add_answer(RR("example.com", QTYPE.NS, ttl=3600, rdata=NS(f"ns{i}.example.com")))
        r.add_ar(RR(f"ns{i}.example.com", QTYPE.A, ttl=3600, rdata=A(f"192.0.2.5{i}")))
    seeds["reply-ns-glue-opt-first"] = bytes(r.pack())

    r = _reply("mail.example.com", "MX")
    r.add_answer(RR("mail.example.com", QTYPE.MX, ttl=300, rdata=MX("mx.mail.example.com", 10)))
    r.add_ar(EDNS0(udp_len=4096, flags="do", opts=[EDNSOption(10, bytes(24))]))
    r.add_ar(RR("mx.mail.example.com", QTYPE.A, ttl=300, rdata=A("192.0.2.25")))
    seeds["reply-mx-opt-before-glue"] = bytes(r.pack())

    r = _reply("big.example", "TXT")
    for i in range(12):
        r.add_answer(RR("big.example", QTYPE.TXT, ttl=60, rdata=TXT(f"{i:03d}" + "x" * 120)))
    seeds["reply-big-txt"] = bytes(r.pack())

    r = _reply("tc.example", "A")
    r.header.tc = 1
    seeds["reply-truncated"] = bytes(r.pack())

    r = _reply("ttl.example", "A")
    r.add_answer(RR("ttl.example", QTYPE.A, ttl=0x80000001, rdata=A("192.0.2.7")))
    r.add_auth(RR("example", QTYPE.SOA, ttl=0xFFFFFFFF, rdata=soa))
    seeds["reply-ttl-top-bit"] = bytes(r.pack())

    r = _reply("ptr.example", "PTR")
    r.add_answer(RR("ptr.example", QTYPE.PTR, ttl=60, rdata=PTR("target.example")))
    r.header.ad = 1
    seeds["reply-ptr-ad"] = bytes(r.pack())

    for rcode in (RCODE.SERVFAIL, RCODE.REFUSED, RCODE.FORMERR):
        r = _reply("err.example", "A")
        r.header.rcode = rcode
        seeds[f"reply-rcode-{rcode}"] = bytes(r.pack())

    seeds.update(extended_error_replies(soa))
    seeds.update(owned_chain_replies(soa))
    seeds["reply-opt-first-then-compressed-glue"] = opt_first_reply()
    return seeds


def garbage_replies() -> Seeds:
    """The hostile upstream's junk, and a forward pointer."""
    seeds: Seeds = {}
    question = bytes(_reply("g.example", "A").pack())[12:]
    header = b"\x42\x42" + struct.pack("!HHHHH", 0x8180, 1, 3, 0, 0)
    seeds["garbage-short"] = b"\x00\x01\x02"
    seeds["garbage-counts"] = b"\x42\x42\x81\x80" + b"\xff" * 40
    seeds["garbage-cut"] = header + question + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x00\x00\x04"
    seeds["garbage-pointers-nowhere"] = header + question + b"\xc0\xff" * 8
    seeds["garbage-forward-pointer"] = (
        b"\x42\x42" + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + question
        + b"\xc0\x30\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"
    )  # fmt: skip
    return seeds


# -- documents ---------------------------------------------------------------------------------


def documents() -> Seeds:
    example = EXAMPLE_MAPPING.read_bytes()
    fleet = _fleet_document().to_bytes()
    raw = json.loads(example)
    seeds: Seeds = {"doc-example": example, "doc-fleet": fleet}
    seeds["doc-pretty"] = json.dumps(raw, indent=2).encode()
    empty = dict(raw, hosts=[], rejected=[], regions=["us-east-1"])
    seeds["doc-empty"] = json.dumps(empty, sort_keys=True).encode()
    small = dict(raw, hosts=raw["hosts"][:2] + raw["hosts"][-3:])
    seeds["doc-small"] = json.dumps(small, sort_keys=True).encode()
    long_host = dict(raw["hosts"][0], name=".".join(["a" * 63] * 3 + ["b" * 61]))
    seeds["doc-long-name"] = json.dumps(dict(raw, hosts=[long_host])).encode()
    multi = dict(raw["hosts"][0], name="blue.svc")
    v6 = dict(raw["hosts"][1], ipv6=["2600:1f18:1::21", "2600:1f18:1:0:0:0:0:22"], name="six")
    seeds["doc-multilabel-v6"] = json.dumps(dict(raw, hosts=[multi, v6])).encode()
    seeds["doc-trailing-garbage"] = example.rstrip() + b" x"
    seeds["doc-bom"] = b"\xef\xbb\xbf" + example
    seeds["doc-big-serial"] = json.dumps(dict(small, serial=2**70)).encode()
    return seeds


# -- reloads -----------------------------------------------------------------------------------


def reloads() -> Seeds:
    """Documents that follow the reload target's base: small changes, and layouts to refuse."""
    base = RELOAD_BASE
    hosts = list(base.hosts)

    def bumped(entries: list[HostEntry], serial: int = 1) -> bytes:
        return make_document(
            serial=base.serial + serial,
            generated_at=base.generated_at,
            tag_key=base.tag_key,
            regions=base.regions,
            hosts=entries,
        ).to_bytes()

    moved = [hosts[0]._replace(private_ipv4="10.77.0.1"), *hosts[1:]]
    first_v6 = next(i for i, h in enumerate(hosts) if h.ipv6)
    v6 = [*hosts[:first_v6], hosts[first_v6]._replace(ipv6=()), *hosts[first_v6 + 1 :]]
    same = base.to_bytes()
    seeds: Seeds = {
        "reload-same": same,
        "reload-bumped": bumped(hosts),
        "reload-moved": bumped(moved),
        "reload-removed": bumped(hosts[1:]),
        "reload-added": bumped(
            [*hosts, hosts[0]._replace(name="newcomer", instance_id="i-00000000000abcdef")]
        ),
        "reload-v6-dropped": bumped(v6),
        "reload-older": bumped(moved, serial=-1),
        "reload-renamed": bumped([hosts[0]._replace(name="renamed"), *hosts[1:]]),
        "reload-pretty": json.dumps(json.loads(bumped(moved)), indent=1).encode(),
        "reload-doubled": _entry_twice(bumped(hosts)),
        "reload-second-hosts": bumped(moved).replace(b',"tag_key"', b',"hosts":[],"tag_key"'),
    }
    return seeds


def _entry_twice(data: bytes) -> bytes:
    """The first host entry listed a second time, right after itself."""
    start = data.index(b"[{") + 1
    end = data.index(b"}", start) + 1
    return data[:end] + b"," + data[start:end] + data[end:]


# -- hosts files -------------------------------------------------------------------------------

_DEBIAN = (
    b"127.0.0.1\tlocalhost\n127.0.1.1\tnode1.example.com\tnode1\n\n"
    b"# The following lines are desirable for IPv6 capable hosts\n"
    b"::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
)


def hosts_files() -> Seeds:
    with_block = merge_hosts(_DEBIAN, VIEWS[0], "seed")
    stale_block = merge_hosts(_DEBIAN, VIEWS[1], "seed") + b"10.9.9.9 after-block\n"
    seeds: Seeds = {
        "hosts-debian": _DEBIAN,
        "hosts-with-block": with_block,
        "hosts-stale-block": stale_block,
        "hosts-crlf": _DEBIAN.replace(b"\n", b"\r\n"),
        "hosts-crlf-block": with_block.replace(b"\n", b"\r\n"),
        "hosts-latin1": b"10.0.0.1 caf\xe9\n" + _DEBIAN,
        "hosts-no-final-newline": _DEBIAN.rstrip(b"\n"),
        "hosts-block-at-eof-no-newline": with_block.rstrip(b"\n"),
        "hosts-damaged-marker": _DEBIAN + b"#BEGIN TAGDNS\n10.0.0.1 x\n# END tagdns\n",
        "hosts-two-blocks": with_block + with_block,
        "hosts-end-first": b"# END tagdns\n" + _DEBIAN,
        "hosts-unclosed": _DEBIAN + b"# BEGIN tagdns\n10.0.0.1 x\n",
        "hosts-empty": b"",
        "hosts-blank-markers": b"  # BEGIN tagdns \t\n\n  # END tagdns\r\n" + _DEBIAN,
    }
    # The first byte chooses the view: each seed once per view.
    return {f"{label}-view{v}": bytes([v]) + data for label, data in seeds.items() for v in (0, 3)}


# -- writing -----------------------------------------------------------------------------------


def _write(target: str, seeds: Seeds) -> int:
    directory = CORPUS_DIR / target
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    seen: set[str] = set()
    for label, data in sorted(seeds.items()):
        digest = hashlib.sha1(data).hexdigest()[:8]  # noqa: S324 - a name, not security
        if digest in seen:
            continue
        seen.add(digest)
        safe = re.sub(r"[^A-Za-z0-9.-]+", "_", label)[:80]
        (directory / f"{safe}-{digest}").write_bytes(data)
    return len(seen)


def main() -> None:
    corpora = {
        "respond": {**tool_queries(), **built_queries(), **tricks()},
        "reply": {**dnsmasq_replies(), **built_replies(), **garbage_replies()},
        "document": documents(),
        "hosts": hosts_files(),
        "reload": reloads(),
    }
    for target, seeds in corpora.items():
        count = _write(target, seeds)
        print(f"{target}: {count} seeds in {(CORPUS_DIR / target).relative_to(CORPUS_DIR.parent)}")


if __name__ == "__main__":
    main()
