"""``tagdns check``'s decisions: /proc/net parsing, port holders, resolved config, verdicts."""

from __future__ import annotations

import errno

import pytest

from resolver.core.endpoints import Endpoint
from resolver.core.preflight import (
    ROUTING_DROP_IN,
    TAKEOVER_DROP_IN,
    Holder,
    ProcSocket,
    UpstreamProbe,
    blocking_inodes,
    dnsmasq_verdict,
    is_systemd_resolved,
    is_tagdns_agent,
    listen_verdict,
    parse_cmdline,
    parse_proc_net,
    resolved_dns_servers,
    resolved_stub_listener_off,
    upstream_probe_verdict,
    upstream_verdicts,
)

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"


def _line(number: int, local: str, remote: str, state: str, inode: int) -> str:
    """One socket line in the kernel's layout (fields after the inode vary by protocol)."""
    return (
        f"{number:4}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000"
        f"     0        0 {inode} 2 0000000000000000 100 0 0 10 0"
    )


def _table(*lines: str) -> str:
    return "\n".join((HEADER, *lines)) + "\n"


V6_ANY = "0" * 32
UDP = _table(
    _line(123, "3500007F:0035", "00000000:0000", "07", 20811),
    _line(456, "00000000:14E9", "00000000:0000", "07", 20999),
    _line(789, "0100007F:A411", "0100007F:0035", "01", 31000),
)
TCP = _table(
    _line(0, "3500007F:0035", "00000000:0000", "0A", 20812),
    _line(1, "0100007F:0035", "0100007F:D2F0", "06", 0),
    _line(2, "0100007F:23C1", "00000000:0000", "0A", 40000),
)
TCP6 = _table(
    _line(0, f"{V6_ANY}:0035", f"{V6_ANY}:0000", "0A", 50001),
    _line(1, "00000000000000000000000001000000:1F90", f"{V6_ANY}:0000", "0A", 50002),
    _line(2, "0000000000000000FFFF00003500007F:0035", f"{V6_ANY}:0000", "0A", 50003),
)


def test_parse_proc_net_ipv4_udp() -> None:
    assert parse_proc_net(UDP) == [
        ProcSocket("127.0.0.53", 53, 0x07, 20811),
        ProcSocket("0.0.0.0", 5353, 0x07, 20999),
        ProcSocket("127.0.0.1", 42001, 0x01, 31000),
    ]


def test_parse_proc_net_ipv6_words_in_host_order_and_mapped_addresses() -> None:
    assert parse_proc_net(TCP6) == [
        ProcSocket("::", 53, 0x0A, 50001),
        ProcSocket("::1", 8080, 0x0A, 50002),
        ProcSocket("127.0.0.53", 53, 0x0A, 50003),
    ]


def test_parse_proc_net_big_endian_hosts() -> None:
    line = "0: 7F000035:0035 00000000:0000 07 0:0 0:0 0 0 0 777 2 0 0\n"
    assert parse_proc_net(line, "big") == [ProcSocket("127.0.0.53", 53, 7, 777)]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage\n",
        "  sl  local_address rem_address st\n",
        "0: ZZZZZZZZ:0035 00000000:0000 07 0:0 0:0 0 0 0 1 2 0 0\n",
        "0: 0100007F:GGGG 00000000:0000 07 0:0 0:0 0 0 0 1 2 0 0\n",
        "0: 0100:0035 00000000:0000 07 0:0 0:0 0 0 0 1 2 0 0\n",
        "0: 0100007F:0035 00000000:0000 07 0:0 0:0 0 0 0 notanumber 2 0 0\n",
        "0: 0100007F:0035 00000000:0000\n",
    ],
    ids=[
        "empty",
        "garbage",
        "header",
        "bad-hex",
        "bad-port",
        "short-address",
        "bad-inode",
        "short",
    ],
)
def test_parse_proc_net_skips_unreadable_lines(text: str) -> None:
    assert parse_proc_net(text) == []


def test_blocking_inodes_matches_address_wildcards_and_only_tcp_listeners() -> None:
    udp = parse_proc_net(UDP)
    tcp = parse_proc_net(TCP) + parse_proc_net(TCP6)
    stub = Endpoint("127.0.0.53", 53)
    assert blocking_inodes(udp, stub, tcp=False) == [20811]
    # The TIME_WAIT entry on 127.0.0.1:53 (inode 0) and other ports never count; the
    # IPv6 wildcard listener on port 53 does, and so does the IPv4-mapped stub.
    assert blocking_inodes(tcp, stub, tcp=True) == [20812, 50001, 50003]
    assert blocking_inodes(udp, Endpoint("127.0.0.1", 5353), tcp=False) == [20999]
    assert blocking_inodes(udp, Endpoint("0.0.0.0", 53), tcp=False) == [20811]
    assert blocking_inodes(tcp, Endpoint("::1", 8080), tcp=True) == [50002]
    assert blocking_inodes(udp, Endpoint("127.0.0.1", 9), tcp=False) == []
    # A connected UDP socket with a local port still holds it.
    assert blocking_inodes(udp, Endpoint("127.0.0.1", 42001), tcp=False) == [31000]


def test_parse_cmdline() -> None:
    assert parse_cmdline(b"/opt/tagdns/bin/python\x00/opt/tagdns/bin/tagdns\x00serve\x00") == (
        "/opt/tagdns/bin/python",
        "/opt/tagdns/bin/tagdns",
        "serve",
    )
    assert parse_cmdline(b"") == ()
    assert parse_cmdline(b"\xff\x00x") == ("\ufffd", "x")


@pytest.mark.parametrize(
    ("holder", "resolved", "agent"),
    [
        (Holder(1, "systemd-resolve"), True, False),
        (Holder(1, "systemd-resolved"), True, False),
        (
            Holder(2, "tagdns", ("/opt/tagdns/bin/python", "/opt/tagdns/bin/tagdns", "serve")),
            False,
            True,
        ),
        (Holder(3, "python3", ("python3", "-m", "resolver.cli", "serve")), False, True),
        (Holder(4, "tagdns", ("tagdns", "hosts")), False, False),
        (Holder(5, "dnsmasq", ("dnsmasq", "serve")), False, False),
        (Holder(6, "python3", ("python3", "fake-tagdns.py", "serve")), False, False),
    ],
    ids=[
        "resolved-short",
        "resolved-long",
        "agent",
        "agent-module",
        "hosts",
        "dnsmasq",
        "lookalike",
    ],
)
def test_holder_classification(holder: Holder, resolved: bool, agent: bool) -> None:
    assert is_systemd_resolved(holder) is resolved
    assert is_tagdns_agent(holder) is agent


STUB = Endpoint("127.0.0.53", 53)
IN_USE = (errno.EADDRINUSE, "Address already in use")


def test_listen_free() -> None:
    result = listen_verdict(STUB, {"udp": None, "tcp": None}, [])
    assert result.ok
    assert result.line() == "ok: listen 127.0.0.53:53: free (UDP and TCP)"


def test_listen_taken_by_systemd_resolved_names_the_fix() -> None:
    result = listen_verdict(STUB, {"udp": IN_USE, "tcp": IN_USE}, [Holder(412, "systemd-resolve")])
    assert not result.ok
    line = result.line()
    assert line.startswith("FAIL: listen 127.0.0.53:53: UDP and TCP port in use: ")
    assert "DNSStubListener=no" in line
    assert TAKEOVER_DROP_IN in line
    assert ROUTING_DROP_IN in line
    assert "Domains" not in line or "~internal" in line
    assert "\n" not in line


def test_listen_held_by_resolved_set_to_let_it_go_is_ok_before_the_restart() -> None:
    """The takeover is checked with its drop-in installed and resolved not yet
    restarted: after that restart the node has no resolver until the agent runs, so
    the check could not fetch the document then."""
    result = listen_verdict(
        STUB,
        {"udp": IN_USE, "tcp": IN_USE},
        [Holder(412, "systemd-resolve")],
        resolved_stub_off=True,
    )
    assert result.line() == (
        "ok: listen 127.0.0.53:53: held by systemd-resolved until it restarts: its "
        "configuration turns the stub listener off (DNSStubListener=no)"
    )
    other = listen_verdict(
        STUB, {"udp": IN_USE, "tcp": None}, [Holder(77, "dnsmasq")], resolved_stub_off=True
    )
    assert not other.ok  # only resolved lets the port go on its restart


@pytest.mark.parametrize(
    ("texts", "off"),
    [
        ([], False),
        (["[Resolve]\nDNSStubListener=no\n"], True),
        (["[Resolve]\nDNSStubListener = false\n"], True),
        (["[Resolve]\nDNSStubListener=udp\n"], False),  # the UDP half still holds the port
        (["[Resolve]\nDNSStubListener=no\n", "[Resolve]\nDNSStubListener=yes\n"], False),
        (["[Resolve]\nDNSStubListener=yes\n", "[Resolve]\nDNSStubListener=no\n"], True),
        (["[Resolve]\nDNSStubListener=no\nDNSStubListener=\n"], False),  # reset: default
        (["[Other]\nDNSStubListener=no\n"], False),
        (["#DNSStubListener=no\n[Resolve]\n;DNSStubListener=no\n"], False),
    ],
    ids=[
        "default",
        "no",
        "false",
        "udp",
        "undone",
        "later-wins",
        "reset",
        "other-section",
        "comments",
    ],
)
def test_resolved_stub_listener_setting_is_read_as_systemd_reads_it(
    texts: list[str], off: bool
) -> None:
    assert resolved_stub_listener_off(texts) is off


def test_listen_taken_by_another_process_names_it() -> None:
    result = listen_verdict(
        Endpoint("127.0.0.1", 5353), {"udp": IN_USE, "tcp": None}, [Holder(77, "dnsmasq")]
    )
    assert result.line() == "FAIL: listen 127.0.0.1:5353: UDP port in use by dnsmasq (pid 77)"


def test_listen_taken_by_an_unknown_process() -> None:
    result = listen_verdict(STUB, {"udp": IN_USE, "tcp": IN_USE}, [])
    assert result.line() == (
        "FAIL: listen 127.0.0.53:53: UDP and TCP port in use by another process "
        "(run as root to see which)"
    )


def test_listen_held_by_the_running_agent_is_fine() -> None:
    agent = Holder(900, "tagdns", ("/usr/bin/python3", "/opt/tagdns/bin/tagdns", "serve"))
    result = listen_verdict(STUB, {"udp": IN_USE, "tcp": IN_USE}, [agent])
    assert result.ok
    assert result.line() == "ok: listen 127.0.0.53:53: held by the running tagdns agent (pid 900)"


def test_listen_shared_by_the_agent_and_another_process_fails() -> None:
    agent = Holder(900, "tagdns", ("tagdns", "serve"))
    result = listen_verdict(STUB, {"udp": IN_USE, "tcp": IN_USE}, [agent, Holder(5, "dnsmasq")])
    assert not result.ok


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ((errno.EACCES, "Permission denied"), "permission denied: ports below 1024"),
        ((errno.EADDRNOTAVAIL, "Cannot assign"), "127.0.0.53 is not an address of this host"),
        ((errno.EAFNOSUPPORT, "Address family not supported"), "cannot bind UDP: Address family"),
        ((errno.EINVAL, ""), "cannot bind UDP: EINVAL"),
    ],
    ids=["eacces", "eaddrnotavail", "other", "no-text"],
)
def test_listen_other_bind_errors(error: tuple[int, str], expected: str) -> None:
    result = listen_verdict(STUB, {"udp": error, "tcp": None}, [])
    assert not result.ok
    assert expected in result.text


def test_metrics_address_wording() -> None:
    result = listen_verdict(
        Endpoint("127.0.0.1", 9153), {"tcp": IN_USE}, [Holder(3, "node_exporter")], what="metrics"
    )
    assert result.line() == "FAIL: metrics 127.0.0.1:9153: TCP port in use by node_exporter (pid 3)"


# -- resolved.conf -------------------------------------------------------------------------


def test_resolved_dns_servers_reads_resolve_section_in_order() -> None:
    main = "[Resolve]\n#DNS=\nDNS=10.0.0.2 1.1.1.1#cloudflare-dns.com\n[Other]\nDNS=9.9.9.9\n"
    drop_in = "[Resolve]\nDNS=127.0.0.153 [::1]:5353 127.0.0.1:10053 fe80::1%eth0\n"
    assert resolved_dns_servers([main, drop_in]) == [
        Endpoint("10.0.0.2", 53),
        Endpoint("1.1.1.1", 53),
        Endpoint("127.0.0.153", 53),
        Endpoint("::1", 5353),
        Endpoint("127.0.0.1", 10053),
        Endpoint("fe80::1", 53),
    ]


def test_resolved_empty_assignment_resets_the_list() -> None:
    assert resolved_dns_servers(["[Resolve]\nDNS=10.0.0.2\n", "[Resolve]\nDNS=\n"]) == []
    assert resolved_dns_servers(["[Resolve]\nDNS=10.0.0.2\nDNS=\nDNS=127.0.0.153\n"]) == [
        Endpoint("127.0.0.153", 53)
    ]


@pytest.mark.parametrize(
    "entry",
    ["dns.example", "[::1", "[::1]:x", "127.0.0.1:x", "127.0.0.1:0", "127.0.0.1:70000", "#only"],
)
def test_resolved_unreadable_entries_are_skipped(entry: str) -> None:
    assert resolved_dns_servers([f"[Resolve]\nDNS={entry} 10.0.0.2\n"]) == [
        Endpoint("10.0.0.2", 53)
    ]


def test_resolved_outside_any_section_or_comments_do_not_count() -> None:
    assert (
        resolved_dns_servers(["DNS=10.0.0.2\n; DNS=1.2.3.4\n[Resolve]\nFallbackDNS=8.8.8.8\n"])
        == []
    )


# -- upstream loops ------------------------------------------------------------------------

LISTEN_B = [Endpoint("127.0.0.153", 53)]
RESOLVED = [Holder(412, "systemd-resolve")]


def test_upstream_through_resolved_back_to_us_is_a_loop() -> None:
    results = upstream_verdicts([STUB], LISTEN_B, [Endpoint("127.0.0.153", 53)], {STUB: RESOLVED})
    assert len(results) == 1
    assert not results[0].ok
    assert "systemd-resolved, which sends queries back to this agent" in results[0].text
    assert "169.254.169.253" in results[0].text


def test_upstream_resolved_that_does_not_route_to_us_is_fine() -> None:
    results = upstream_verdicts([STUB], LISTEN_B, [Endpoint("10.0.0.2", 53)], {STUB: RESOLVED})
    assert [r.line() for r in results] == ["ok: upstream 127.0.0.53:53"]


def test_upstream_that_is_our_own_listener() -> None:
    results = upstream_verdicts([Endpoint("127.0.0.153", 53)], LISTEN_B, [], {})
    assert not results[0].ok
    assert "forwarding loop" in results[0].text


def test_plain_upstreams_are_fine() -> None:
    upstreams = [Endpoint("169.254.169.253", 53), Endpoint("10.0.0.2", 53)]
    results = upstream_verdicts(upstreams, [STUB], [], {})
    assert [r.line() for r in results] == [
        "ok: upstream 169.254.169.253:53",
        "ok: upstream 10.0.0.2:53",
    ]


# -- [hosts] dnsmasq_pidfile -------------------------------------------------------------------


def test_dnsmasq_not_running_is_ok_and_says_so() -> None:
    later = "it reads the hosts file when it starts"
    assert dnsmasq_verdict("/run/d.pid", None, None).line() == (
        f"ok: hosts dnsmasq_pidfile /run/d.pid: dnsmasq is not running (no pidfile); {later}"
    )
    assert dnsmasq_verdict("/run/d.pid", 4242, None).line() == (
        f"ok: hosts dnsmasq_pidfile /run/d.pid: dnsmasq is not running (no process 4242); {later}"
    )


def test_dnsmasq_pid_held_by_another_process_fails() -> None:
    result = dnsmasq_verdict("/run/d.pid", 4242, "sshd")
    assert not result.ok
    assert result.line() == (
        "FAIL: hosts dnsmasq_pidfile /run/d.pid: pid 4242 is 'sshd', not dnsmasq: the agent "
        "would not signal it after a change (stale pidfile?)"
    )


def test_dnsmasq_pid_alive_but_hidden_fails() -> None:
    """/proc mounted hidepid (ProtectProc=invisible): alive, but not known to be dnsmasq."""
    result = dnsmasq_verdict("/run/d.pid", 4242, None, alive=True)
    assert not result.ok
    assert result.line() == (
        "FAIL: hosts dnsmasq_pidfile /run/d.pid: pid 4242 is running but cannot be identified "
        "as dnsmasq (/proc/4242/comm is hidden or unreadable: /proc mounted with hidepid, or "
        "systemd's ProtectProc=invisible?): the agent would not signal it after a change"
    )


def test_dnsmasq_running_is_ok() -> None:
    assert dnsmasq_verdict("/run/d.pid", 4242, "dnsmasq").line() == (
        "ok: hosts dnsmasq_pidfile /run/d.pid: dnsmasq running (pid 4242)"
    )


@pytest.mark.parametrize(
    ("probe", "line"),
    [
        (UpstreamProbe(0, 0.0034), "ok: upstream 10.0.0.2:53: answers (3 ms)"),
        (UpstreamProbe(3, 0.01), "ok: upstream 10.0.0.2:53: answers (10 ms)"),  # NXDOMAIN
        (
            UpstreamProbe(5, 0.001),
            "FAIL: upstream 10.0.0.2:53: answered REFUSED to a recursive question (. NS); "
            "names not owned would get SERVFAIL",
        ),
        (
            UpstreamProbe(2, 0.001),
            "FAIL: upstream 10.0.0.2:53: answered SERVFAIL to a recursive question (. NS); "
            "names not owned would get SERVFAIL",
        ),
        (
            UpstreamProbe(5, 0.001, extended_error=(18, "not for this network")),
            "FAIL: upstream 10.0.0.2:53: answered REFUSED (EDE 18: not for this network) to a "
            "recursive question (. NS); names not owned would get SERVFAIL",
        ),
        (
            UpstreamProbe(2, 0.001, extended_error=(22, "")),
            "FAIL: upstream 10.0.0.2:53: answered SERVFAIL (EDE 22) to a recursive question "
            "(. NS); names not owned would get SERVFAIL",
        ),
        (
            UpstreamProbe(16, 0.001),
            "FAIL: upstream 10.0.0.2:53: answered RCODE16 to a recursive question (. NS); "
            "names not owned would get SERVFAIL",
        ),
        (
            UpstreamProbe(None, 2.0, "no answer in 2 s"),
            "FAIL: upstream 10.0.0.2:53: no answer in 2 s; names not owned would get SERVFAIL",
        ),
    ],
    ids=[
        "noerror",
        "nxdomain",
        "refused",
        "servfail",
        "refused-saying-why",
        "servfail-saying-why",
        "badvers",
        "silent",
    ],
)
def test_upstream_probe_verdicts(probe: UpstreamProbe, line: str) -> None:
    assert upstream_probe_verdict(Endpoint("10.0.0.2", 53), probe).line() == line
