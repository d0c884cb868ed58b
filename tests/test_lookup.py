"""``tagdns lookup`` from the command line: the view's answer for a name, without DNS.

Exit 0 whenever the answer is known (owned, NODATA, NXDOMAIN, or forwarded
upstream: a name the view does not own is an answer, not a failure); 2 with one
line on stderr for a name that cannot be a DNS name; never a traceback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from resolver.adapters.held_signals import HELD, hold, release
from resolver.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "conf" / "example-mapping.json"
TAGDNS = str(Path(sys.executable).with_name("tagdns"))
VIEW = ["--source", str(EXAMPLE), "--view", "us-east-1"]
HEADER = "view us-east-1, zone internal, serial 1764076800"


def lookup(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["lookup", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_owned_name_prints_its_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = lookup(capsys, "web1", *VIEW)
    assert (code, err) == (0, "")
    assert lines == [HEADER, "web1. 30 A 10.0.1.10", "web1. 30 AAAA 2600:1f18:1::10"]


def test_fully_qualified_name_with_trailing_dot(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = lookup(capsys, "web1.internal.", *VIEW)
    assert code == 0
    assert "web1.internal. 30 A 10.0.1.10" in lines


@pytest.mark.parametrize(
    "name",
    [
        "10.1.0.10.in-addr.arpa",
        "10.1.0.10.IN-ADDR.ARPA.",
        "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.8.1.f.1.0.0.6.2.ip6.arpa",
    ],
    ids=["in-addr", "in-addr-uppercase-dot", "ip6"],
)
def test_a_reverse_name_is_asked_for_its_ptr_as_an_address_is(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, lines, err = lookup(capsys, name, *VIEW)
    assert (code, err) == (0, "")
    assert len(lines) == 2 and lines[1].endswith(" 30 PTR api.internal.")
    assert lines[1].lower().startswith(name.lower().rstrip(".") + ".")


@pytest.mark.parametrize(
    "name",
    ["example.com", "nothere.internal", "10.9.9.9"],
    ids=["outside-zone", "under-zone", "address"],
)
def test_name_not_owned_is_an_answer_and_exits_0(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = lookup(capsys, name, *VIEW)
    assert code == 0, lines
    assert err == ""
    assert lines[0] == HEADER
    assert lines[1:]
    assert all(line.endswith(": not owned: forwarded upstream") for line in lines[1:])


def test_name_not_owned_exits_0_from_the_console_script() -> None:
    result = subprocess.run(
        [TAGDNS, "lookup", "example.com", *VIEW],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout.splitlines()[1:] == [
        "example.com A: not owned: forwarded upstream",
        "example.com AAAA: not owned: forwarded upstream",
    ]


def test_unicode_name_is_asked_in_idna_form_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines, err = lookup(capsys, "café", *VIEW)
    assert (code, err) == (0, "")
    assert lines == [
        HEADER,
        "café: asked as xn--caf-dma (IDNA)",
        "xn--caf-dma A: not owned: forwarded upstream",
        "xn--caf-dma AAAA: not owned: forwarded upstream",
    ]


def test_ideographic_full_stop_separates_labels_as_in_idna(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines, _ = lookup(capsys, "web1\u3002internal", *VIEW)
    assert code == 0
    assert lines[1] == "web1\u3002internal: asked as web1.internal (IDNA)"
    assert "web1.internal. 30 A 10.0.1.10" in lines


LONG_NAME = ".".join(["c" * 63] * 3 + ["d" * 61]) + ".internal"  # 253 octets + .internal


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a..b", "it has an empty label (a leading dot, or two dots in a row)"),
        (".web1", "it has an empty label (a leading dot, or two dots in a row)"),
        ("", "it is empty"),
        ("a" * 70, "it is 70 octets, more than 63 for a label"),
        ("x." + "b" * 64, f"label {'b' * 64!r} is 64 octets, more than 63 for a label"),
        (LONG_NAME, "it is 262 octets, more than 253"),
        ("é" * 70, "it is 76 octets in IDNA form, more than 63 for a label"),
        ("\u200b", "it is empty once IDNA maps it"),
        ("a.xn--é", "label 'xn--é' has no IDNA form: Label starts with ACE prefix"),
        (".".join(["é" * 50] * 5), "it is 284 octets in IDNA form, more than 253"),
    ],
    ids=[
        "empty-label",
        "leading-dot",
        "empty",
        "label-70",
        "second-label-64",
        "name-262",
        "idna-label-too-long",
        "idna-maps-to-nothing",
        "idna-ace-prefix",
        "idna-name-too-long",
    ],
)
def test_name_that_cannot_be_a_dns_name_is_one_line_and_exit_2(
    name: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = lookup(capsys, name, *VIEW)
    assert code == 2
    assert lines == []
    assert err == f"tagdns: lookup: {name!r} is not a DNS name: {problem}\n"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("fe80::1%eth0", "an address with a zone index (%eth0) has no PTR name; leave out %eth0"),
        ("fe80::1%", "an address with a zone index (%) has no PTR name; leave out %"),
        ("1.2.3.4/24", "it is a network, not an address; give one address for its PTR"),
        ("2600:1f18::/64", "it is a network, not an address; give one address for its PTR"),
        ("10.0.1.10/32", "it is a network, not an address; give one address for its PTR"),
    ],
    ids=["scoped-ipv6", "empty-scope", "ipv4-network", "ipv6-network", "host-network"],
)
def test_odd_addresses_are_one_line_and_exit_2(
    name: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = lookup(capsys, name, *VIEW)
    assert (code, lines) == (2, [])
    assert err.startswith(f"tagdns: lookup: {name!r} is not a DNS name: {problem}"), err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        (".", "."),
        ("a b", "a\\032b"),
        ("a\nb", "a\\010b"),
        ("tab\there.", "tab\\009here"),
        ("a/b", "a/b"),
        ("1.2.3.4.", "1.2.3.4"),
    ],
    ids=["root", "space", "newline", "tab", "slash", "dotted-quad-fqdn"],
)
def test_names_a_query_can_carry_are_shown_on_one_line(
    name: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any octet can travel in a query label; the output shows it escaped, as dig does."""
    code, lines, err = lookup(capsys, name, *VIEW)
    assert (code, err) == (0, "")
    assert lines == [
        HEADER,
        f"{shown} A: not owned: forwarded upstream",
        f"{shown} AAAA: not owned: forwarded upstream",
    ]


def test_bad_name_from_the_console_script_has_no_traceback() -> None:
    result = subprocess.run(
        [TAGDNS, "lookup", LONG_NAME, *VIEW],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"tagdns: lookup: {LONG_NAME!r} is not a DNS name: it is 262 octets, more than 253\n"
    )


def test_longest_legal_name_is_looked_up(capsys: pytest.CaptureFixture[str]) -> None:
    name = ".".join(["c" * 63] * 3 + ["d" * 61])  # 253 octets: the limit itself
    code, lines, err = lookup(capsys, name, *VIEW)
    assert (code, err) == (0, "")
    assert lines[1] == f"{name} A: not owned: forwarded upstream"


def test_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lookup", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit 0 whenever the answer is known" in text
    assert "forward it upstream" in text


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "document is not valid JSON: Expecting value at line 1 column 1"),
        (b"xx\n", "document is not valid JSON: Expecting value at line 1 column 1"),
        (b"[]", "document"),
    ],
    ids=["empty", "not-json", "not-an-object"],
)
@pytest.mark.parametrize("command", ["lookup web1", "hosts --output -"])
def test_document_errors_name_the_source_as_serve_does(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    content: bytes,
    problem: str,
) -> None:
    source = tmp_path / "mapping.json"
    source.write_bytes(content)
    argv = [*command.split(), "--source", str(source), "--view", "us-east-1"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"tagdns: {source}: {problem}"), captured.err
    assert captured.err.count("\n") == 1
    assert captured.err.endswith("; nothing written\n") == command.startswith("hosts")


def test_commands_other_than_serve_leave_a_hang_up_its_default_action(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The console script holds SIGHUP and SIGUSR1 for the agent, which takes them once
    its handlers are in; any other command lets them go as soon as its arguments are
    parsed, so a closed terminal still ends it."""
    hold()
    try:
        code, _lines, _err = lookup(capsys, "web1", *VIEW)
        assert code == 0
        assert not HELD & signal.pthread_sigmask(signal.SIG_BLOCK, ())
    finally:
        release()
