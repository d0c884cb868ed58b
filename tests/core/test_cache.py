"""The answer cache (TTLs, caps, LRU, flushing) and rendering a forwarded answer for a client.

Time is an injected clock; answers come from dnslib-built upstream replies run
through parse_reply, and rendered replies are parsed back with dnslib.
"""

from __future__ import annotations

import struct

import pytest
from dnslib import CNAME, EDNS0, QTYPE, RCODE, RR, SOA, A, DNSHeader, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core import wire
from resolver.core.cache import AnswerCache, CacheLimits, render_answer
from resolver.core.upstream_reply import UpstreamAnswer, parse_reply

QID = b"\xab\xcd"
FLAG_AD = 0x0020


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def key_of(name: str, qtype: str = "A") -> bytes:
    question = bytes(DNSRecord.question(name, qtype).pack())[12:]
    return question[:-4].lower() + question[-4:]


def upstream_answer(
    name: str = "www.example.test",
    *,
    ttls: tuple[int, ...] = (300,),
    rcode: int = RCODE.NOERROR,
    soa: tuple[int, int] | None = None,
    tc: bool = False,
    ad: bool = False,
    qtype: str = "A",
) -> UpstreamAnswer:
    record = DNSRecord(
        DNSHeader(id=0xABCD, qr=1, aa=1, ra=1, rd=1, rcode=rcode, tc=int(tc), ad=int(ad)),
        q=DNSRecord.question(name, qtype).q,
    )
    for index, ttl in enumerate(ttls):
        record.add_answer(RR(name, QTYPE.A, ttl=ttl, rdata=A(f"192.0.2.{index + 1}")))
    if soa is not None:
        record.add_auth(
            RR(
                "example.test",
                QTYPE.SOA,
                ttl=soa[0],
                rdata=SOA("ns.example.test", "hostmaster.example.test", (1, 2, 3, 4, soa[1])),
            )
        )
    record.add_ar(EDNS0(udp_len=4096))
    answer = parse_reply(bytes(record.pack()), QID, key_of(name, qtype))
    assert answer is not None
    return answer


def client_question(name: str = "www.example.test", qtype: str = "A") -> bytes:
    return bytes(DNSRecord.question(name, qtype).pack())[12:]


def render(
    answer: UpstreamAnswer,
    sections: bytes | None = None,
    *,
    name: str = "www.example.test",
    client_flags: int = wire.FLAG_RD,
    variant: int = 0,
    limit: int | None = None,
    qid: bytes = QID,
) -> bytes:
    return render_answer(
        answer,
        answer.sections if sections is None else sections,
        qid=qid,
        client_flags=client_flags,
        question=client_question(name),
        variant=variant,
        limit=limit,
    )


# --- the cache ------------------------------------------------------------------------------


def test_entries_expire_with_their_ttl_and_count_down() -> None:
    clock = Clock()
    cache = AnswerCache(clock=clock)
    key = AnswerCache.key(key_of("www.example.test"), do=False)
    cache.put(key, upstream_answer(ttls=(60, 90)))
    assert len(cache) == 1
    found = cache.get(key)
    assert found is not None and found[1] == found[0].sections
    clock.now += 59.5
    found = cache.get(key)
    assert found is not None
    aged = DNSRecord.parse(render(found[0], found[1]))
    assert [rr.ttl for rr in aged.rr] == [1, 31]
    clock.now += 0.5
    assert cache.get(key) is None and len(cache) == 0
    assert (cache.hits, cache.misses) == (2, 1)


def test_an_answer_stored_after_the_fact_counts_down_from_its_arrival() -> None:
    """The forwarder replies first and stores after, passing the time the answer came."""
    clock = Clock()
    cache = AnswerCache(clock=clock)
    key = AnswerCache.key(key_of("www.example.test"), do=False)
    arrived = clock.now
    clock.now += 10
    cache.put(key, upstream_answer(ttls=(60,)), arrived)
    found = cache.get(key)
    assert found is not None
    assert [rr.ttl for rr in DNSRecord.parse(render(found[0], found[1])).rr] == [50]
    clock.now += 50
    assert cache.get(key) is None


def test_negative_answers_live_for_the_soa_minimum() -> None:
    clock = Clock()
    cache = AnswerCache(clock=clock)
    key = AnswerCache.key(key_of("gone.example.test"), do=False)
    cache.put(
        key, upstream_answer("gone.example.test", ttls=(), rcode=RCODE.NXDOMAIN, soa=(300, 30))
    )
    clock.now += 29
    found = cache.get(key)
    assert found is not None and found[0].rcode == wire.NXDOMAIN
    # The SOA says what is left of the negative lifetime, min(TTL, MINIMUM) (RFC 2308 5).
    assert [
        rr.ttl for rr in DNSRecord.parse(render(found[0], found[1], name="gone.example.test")).auth
    ] == [1]
    clock.now += 1
    assert cache.get(key) is None


@pytest.mark.parametrize(
    "answer",
    [
        upstream_answer(ttls=(0,)),
        upstream_answer(ttls=(), rcode=RCODE.NXDOMAIN),
        upstream_answer(ttls=(), rcode=RCODE.SERVFAIL, soa=(60, 60)),
        upstream_answer(ttls=(300,), tc=True),
        upstream_answer(ttls=()),
    ],
    ids=["ttl-zero", "nxdomain-no-soa", "servfail", "truncated", "nodata-no-soa"],
)
def test_uncacheable_answers_are_not_stored(answer: UpstreamAnswer) -> None:
    cache = AnswerCache(clock=Clock())
    cache.put(b"k\x00", answer)
    assert len(cache) == 0


def test_ttl_caps_bound_the_lifetime_and_the_ttls_clients_see() -> None:
    clock = Clock()
    cache = AnswerCache(CacheLimits(max_ttl=100, max_negative_ttl=10), clock=clock)
    positive = AnswerCache.key(key_of("www.example.test"), do=False)
    negative = AnswerCache.key(key_of("gone.example.test"), do=False)
    cache.put(positive, upstream_answer(ttls=(86400, 50)))
    cache.put(
        negative,
        upstream_answer("gone.example.test", ttls=(), rcode=RCODE.NXDOMAIN, soa=(600, 600)),
    )
    found = cache.get(positive)
    assert found is not None
    assert [rr.ttl for rr in DNSRecord.parse(render(found[0], found[1])).rr] == [100, 50]
    clock.now += 10
    assert cache.get(negative) is None
    assert cache.get(positive) is not None
    clock.now += 40  # the positive answer lives min(TTLs) = 50
    assert cache.get(positive) is None


def test_least_recently_used_entry_goes_first() -> None:
    cache = AnswerCache(CacheLimits(max_entries=3), clock=Clock())
    keys = [AnswerCache.key(key_of(f"n{i}.example.test"), do=False) for i in range(4)]
    for key in keys[:3]:
        cache.put(key, upstream_answer())
    assert cache.get(keys[0]) is not None  # n0 is now the most recent
    cache.put(keys[3], upstream_answer())
    assert len(cache) == 3
    assert cache.get(keys[1]) is None
    assert all(cache.get(key) is not None for key in (keys[0], keys[2], keys[3]))


def test_replacing_an_entry_keeps_the_cap() -> None:
    cache = AnswerCache(CacheLimits(max_entries=2), clock=Clock())
    for _ in range(5):
        cache.put(b"same\x00", upstream_answer())
    assert len(cache) == 1


def test_do_and_cd_make_separate_keys_and_flush_finds_them_all() -> None:
    question = key_of("www.example.test")
    keys = {AnswerCache.key(question, do, cd) for do in (False, True) for cd in (False, True)}
    assert len(keys) == 4
    assert all(key[:-5] == question[:-4] for key in keys)  # name wire is the flush key
    assert AnswerCache.key(question, True) == AnswerCache.key(question, do=True, cd=False)

    cache = AnswerCache(clock=Clock())
    for key in keys:
        cache.put(key, upstream_answer())
    other_type = AnswerCache.key(key_of("www.example.test", "AAAA"), do=False)
    cache.put(other_type, upstream_answer(qtype="AAAA"))
    bystander = AnswerCache.key(key_of("www2.example.test"), do=False)
    cache.put(bystander, upstream_answer("www2.example.test"))
    parent = AnswerCache.key(key_of("example.test"), do=False)
    cache.put(parent, upstream_answer("example.test"))

    owned = {question[:-4], b"\x07nothere\x00"}
    assert cache.flush_names(owned) == 5
    assert len(cache) == 2
    assert cache.get(bystander) is not None and cache.get(parent) is not None
    cache.clear()
    assert len(cache) == 0


def test_a_reload_flushes_every_cname_chain_and_keeps_the_rest() -> None:
    """A chain may end at a name the new zone owns, or owned a moment ago and
    completed from the old data (owned_target): none may outlive a reload."""
    chain = DNSRecord(
        DNSHeader(id=0xABCD, qr=1, ra=1, rd=1),  # the CNAME alone, as dnsmasq gives it
        q=DNSRecord.question("alias.example.test").q,
    )
    chain.add_answer(RR("alias.example.test", QTYPE.CNAME, ttl=600, rdata=CNAME("web1.internal")))
    chained = parse_reply(bytes(chain.pack()), QID, key_of("alias.example.test"))
    assert chained is not None
    cache = AnswerCache(clock=Clock())
    chain_key = AnswerCache.key(key_of("alias.example.test"), do=False)
    plain_key = AnswerCache.key(key_of("www.example.test"), do=False)
    cache.put(chain_key, chained)
    cache.put(plain_key, upstream_answer())
    assert cache.flush_names(set()) == 1
    assert cache.get(chain_key) is None and cache.get(plain_key) is not None

    # The CNAME's owner written out in full rather than as a pointer to the question.
    owner = b"\x05alias\x07example\x04test\x00"
    spelled = chained.sections.replace(wire.POINTER_TO_QNAME, owner, 1)
    offsets = tuple(offset + len(owner) - 2 for offset in chained.ttl_offsets)
    cache.put(chain_key, chained._replace(sections=spelled, ttl_offsets=offsets))
    assert cache.flush_names(set()) == 1


# --- rendering for a client --------------------------------------------------------------


def test_render_uses_the_clients_id_and_question_case() -> None:
    answer = upstream_answer("www.example.test")
    reply = render(answer, name="WwW.ExAmPlE.TeSt", qid=b"\x00\x07")
    question = client_question("WwW.ExAmPlE.TeSt")
    assert reply[:2] == b"\x00\x07" and reply[12 : 12 + len(question)] == question
    parsed = DNSRecord.parse(reply)
    assert [str(rr.rname) for rr in parsed.rr] == ["WwW.ExAmPlE.TeSt."]  # compressed to it


@pytest.mark.parametrize(
    ("client_flags", "variant", "authentic", "want_ad"),
    [
        (wire.FLAG_RD, 0, True, False),
        (wire.FLAG_RD, 1, True, False),
        (wire.FLAG_RD, 2, True, True),  # DO
        (wire.FLAG_RD | FLAG_AD, 0, True, True),  # AD in the query (RFC 6840 5.7)
        (wire.FLAG_RD | FLAG_AD, 1, True, True),
        (wire.FLAG_RD | FLAG_AD, 2, False, False),  # never invented
        (0, 2, True, True),
    ],
)
def test_ad_only_when_the_client_asked(
    client_flags: int, variant: int, authentic: bool, want_ad: bool
) -> None:
    reply = render(upstream_answer(ad=authentic), client_flags=client_flags, variant=variant)
    flags = struct.unpack("!H", reply[2:4])[0]
    assert bool(flags & FLAG_AD) == want_ad


@pytest.mark.parametrize(
    "client_flags", [0, wire.FLAG_RD, wire.FLAG_CD, wire.FLAG_RD | wire.FLAG_CD]
)
def test_flags_aa_never_ra_always_rd_and_cd_from_the_client(client_flags: int) -> None:
    noisy = client_flags | wire.FLAG_AA | wire.FLAG_TC | wire.FLAG_RA | 0x0040  # Z bit
    reply = render(upstream_answer(), client_flags=noisy)
    flags = struct.unpack("!H", reply[2:4])[0]
    assert flags & wire.FLAG_QR and flags & wire.FLAG_RA
    assert not flags & (wire.FLAG_AA | wire.FLAG_TC | 0x0040)
    assert flags & (wire.FLAG_RD | wire.FLAG_CD) == client_flags
    assert flags & wire.OPCODE_MASK == 0


def test_rcode_is_the_upstreams() -> None:
    answer = upstream_answer(ttls=(), rcode=RCODE.NXDOMAIN, soa=(60, 60))
    parsed = DNSRecord.parse(render(answer))
    assert parsed.header.rcode == RCODE.NXDOMAIN and len(parsed.auth) == 1


@pytest.mark.parametrize(
    ("variant", "opt", "do"), [(0, False, False), (1, True, False), (2, True, True)]
)
def test_opt_only_for_edns_clients_with_do_echoed(variant: int, opt: bool, do: bool) -> None:
    parsed = DNSRecord.parse(render(upstream_answer(), variant=variant))
    opts = [rr for rr in parsed.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) == int(opt)
    if opt:
        assert opts[0].rclass == wire.EDNS_PAYLOAD and bool(opts[0].ttl & wire.EDNS_DO) == do
    assert parsed.header.ar == len(parsed.ar)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_larger_than_the_clients_limit_is_truncated(variant: int) -> None:
    answer = upstream_answer(ttls=tuple(range(1, 41)), ad=True)  # 40 A records
    full = render(answer, variant=variant, client_flags=wire.FLAG_RD | FLAG_AD)
    assert len(full) > 512
    assert render(answer, variant=variant, limit=len(full), client_flags=wire.FLAG_RD) == render(
        answer, variant=variant, client_flags=wire.FLAG_RD
    )
    cut = render(answer, variant=variant, limit=512, client_flags=wire.FLAG_RD | FLAG_AD)
    parsed = DNSRecord.parse(cut)
    assert parsed.header.tc == 1 and not parsed.rr and not parsed.auth
    assert parsed.header.ad == 0 and parsed.header.aa == 0 and parsed.header.ra == 1
    assert len([rr for rr in parsed.ar if rr.rtype == QTYPE.OPT]) == (1 if variant else 0)
    assert parsed.header.id == 0xABCD and parsed.header.rd == 1
    assert len(cut) <= 512


def test_over_tcp_a_reply_is_bounded_by_a_tcp_message() -> None:
    """An upstream's answer of 65,535 bytes with our OPT added is longer than a TCP
    message may be: framing it raised struct.error and lost the connection's other
    answers. TC then, fresh and cached, as over UDP."""
    answer = upstream_answer()
    room = wire.MAX_MESSAGE - len(QID) - 10 - len(client_question())
    answer = answer._replace(sections=answer.sections + b"\x00" * (room - len(answer.sections)))
    assert len(render(answer)) == wire.MAX_MESSAGE  # no OPT: it fits, whole
    cut = render(answer, variant=1)
    assert len(cut) <= wire.MAX_MESSAGE
    assert DNSRecord.parse(cut).header.tc == 1
    cache = AnswerCache(limits=CacheLimits(max_bytes=1 << 20))
    cache.put(b"k\x00", answer)
    query, qend = client_query("www.example.test", wire.FLAG_RD)
    replayed = cache.replay(b"k\x00", query, qend, 1, None)
    assert replayed is not None and len(replayed) <= wire.MAX_MESSAGE
    assert DNSRecord.parse(replayed).header.tc == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=30),
    st.integers(0, 100_000),
    st.sampled_from([0, 1, 2]),
    st.one_of(st.none(), st.integers(512, 1232)),
)
def test_rendered_replies_always_parse_and_fit(
    ttls: list[int], elapsed: int, variant: int, limit: int | None
) -> None:
    clock = Clock()
    cache = AnswerCache(CacheLimits(max_ttl=2**31), clock=clock)
    answer = upstream_answer(ttls=tuple(ttls))
    cache.put(b"k\x00", answer)
    clock.now += elapsed
    found = cache.get(b"k\x00")
    if found is None:
        assert elapsed >= min(ttls)
        return
    reply = render(found[0], found[1], variant=variant, limit=limit)
    parsed = DNSRecord.parse(reply)
    if limit is not None:
        assert len(reply) <= limit
    if not parsed.header.tc:
        assert [rr.ttl for rr in parsed.rr] == [max(0, ttl - elapsed) for ttl in ttls]


def test_stored_bytes_are_bounded_oldest_first() -> None:
    """A byte cap evicts least recently used entries even when the entry cap is far away."""
    from resolver.core.cache import AnswerCache, CacheLimits
    from resolver.core.upstream_reply import UpstreamAnswer

    def answer(size: int) -> UpstreamAnswer:
        return UpstreamAnswer(
            rcode=0,
            authentic=False,
            an=1,
            ns=0,
            ar=0,
            sections=b"x" * size,
            ttl_offsets=(),
            ttls=(),
            lifetime=60,
            truncated=False,
        )

    cache = AnswerCache(CacheLimits(max_entries=100, max_bytes=1000), clock=lambda: 0.0)
    for index in range(5):
        cache.put(bytes([index]), answer(300))
    assert len(cache) == 3
    assert cache.stored_bytes == 900
    assert cache.get(bytes([0])) is None and cache.get(bytes([1])) is None
    assert cache.get(bytes([4])) is not None
    cache.put(bytes([4]), answer(100))  # replacing an entry releases its old bytes
    assert cache.stored_bytes == 700
    cache.clear()
    assert cache.stored_bytes == 0


# --- replaying from the cache on the responder's fast path ----------------------------------


def client_query(name: str, client_flags: int, qid: bytes = QID) -> tuple[bytes, int]:
    """A client's message (header and question; replay reads no further) and its qend."""
    question = client_question(name)
    return qid + struct.pack("!HHHHH", client_flags, 1, 0, 0, 0) + question, 12 + len(question)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 0xFFFF),  # the client's flags word, any bits at all
            st.sampled_from([0, 1, 2]),
            st.one_of(st.none(), st.integers(512, 1232)),
            st.integers(0, 3),  # seconds passing before this ask
        ),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.integers(0, 5000), min_size=1, max_size=40),
    st.booleans(),
    st.one_of(st.none(), st.tuples(st.integers(0, 0xFFFF), st.text(max_size=80))),
)
def test_replay_is_render_answer_of_the_counted_down_sections(
    asks: list[tuple[int, int, int | None, int]],
    ttls: list[int],
    authentic: bool,
    extended_error: tuple[int, str] | None,
) -> None:
    """However the header table is filled, each replay is exactly the rendered answer."""
    clock = Clock()
    cache = AnswerCache(clock=clock)
    answer = upstream_answer(ttls=tuple(ttls), ad=authentic)
    answer = answer._replace(extended_error=extended_error)
    cache.put(b"k\x00", answer)
    for index, (flags, variant, limit, wait) in enumerate(asks):
        clock.now += wait
        query, qend = client_query("wWw.Example.TEST", flags, qid=bytes((index, 7)))
        found = cache.get(b"k\x00")
        reply = cache.replay(b"k\x00", query, qend, variant, limit)
        if found is None:
            assert reply is None
            continue
        assert reply == render(
            found[0],
            found[1],
            name="wWw.Example.TEST",
            client_flags=flags,
            variant=variant,
            limit=limit,
            qid=bytes((index, 7)),
        )


def test_an_upstreams_extended_error_reaches_edns_clients_fresh_and_cached() -> None:
    """A filtering resolver's reason (EDE 15, Blocked) travels with its answer."""
    clock = Clock()
    cache = AnswerCache(clock=clock)
    answer = upstream_answer(ttls=(), rcode=RCODE.NXDOMAIN, soa=(60, 60))
    answer = answer._replace(extended_error=(15, "blocked by policy"))
    cache.put(b"k\x00", answer)
    query, qend = client_query("www.example.test", wire.FLAG_RD)
    cached = cache.replay(b"k\x00", query, qend, 2, 1232)
    for reply in (render(answer, variant=2), cached):
        assert reply is not None
        record = DNSRecord.parse(reply)
        assert record.header.rcode == RCODE.NXDOMAIN and len(record.auth) == 1
        [opt] = [rr for rr in record.ar if rr.rtype == QTYPE.OPT]
        assert opt.edns_do == 1
        [ede] = opt.rdata
        assert (ede.code, bytes(ede.data)) == (15, b"\x00\x0fblocked by policy")
    plain = cache.replay(b"k\x00", query, qend, 0, 512)
    assert plain is not None and DNSRecord.parse(plain).ar == []  # no EDNS: no OPT to carry it


def test_replay_of_an_absent_or_expired_entry_is_none() -> None:
    clock = Clock()
    cache = AnswerCache(clock=clock)
    query, qend = client_query("www.example.test", wire.FLAG_RD)
    assert cache.replay(b"k\x00", query, qend, 0, 512) is None
    cache.put(b"k\x00", upstream_answer(ttls=(30,)))
    assert cache.replay(b"k\x00", query, qend, 0, 512) is not None
    clock.now += 30
    assert cache.replay(b"k\x00", query, qend, 0, 512) is None
    assert len(cache) == 0 and (cache.hits, cache.misses) == (1, 2)


def test_a_new_entry_is_not_evicted_to_make_room_for_itself() -> None:
    """All others used since they were last looked at: the oldest of them goes, not the new one."""
    cache = AnswerCache(CacheLimits(max_entries=3))
    keys = [f"n{i}\x00".encode() for i in range(4)]
    for key in keys[:3]:
        cache.put(key, upstream_answer())
    assert all(cache.get(key) is not None for key in keys[:3])
    cache.put(keys[3], upstream_answer())
    assert len(cache) == 3
    assert cache.get(keys[3]) is not None and cache.get(keys[0]) is None


def test_an_entry_larger_than_the_byte_cap_is_not_kept() -> None:
    cache = AnswerCache(CacheLimits(max_bytes=10))
    cache.put(b"k\x00", upstream_answer())  # one A record: 16 bytes
    assert len(cache) == 0 and cache.stored_bytes == 0
