"""The managed block of a hosts file: found, replaced or appended, never guessed at."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core.document import MappingDocument
from resolver.core.hosts_merge import (
    BEGIN_MARKER,
    END_MARKER,
    find_block,
    has_markers,
    merge_block,
    merge_hosts,
    remove_block,
    render_block,
    render_dnsmasq,
    render_hosts_block,
    replace_dnsmasq,
)
from resolver.core.views import View, ViewRecord, public_view
from resolver.errors import HostsFileError
from tests.core.strategies import documents, ipv4s, names

WHERE = "/etc/hosts"
VIEW = View(
    label="us-east-1",
    zone="internal",
    serial=7,
    records=(
        ViewRecord("api", ("54.1.0.1",), (), qualified=False),
        ViewRecord("web", ("10.0.0.1", "10.0.0.2"), ("2600::1",), qualified=True),
    ),
)
BLOCK = (
    b"# BEGIN tagdns\n"
    b"# Managed by tagdns (view us-east-1, zone internal): "
    b"edits inside this block are overwritten\n"
    b"54.1.0.1 api\n"
    b"10.0.0.1 web.internal web\n"
    b"10.0.0.2 web.internal web\n"
    b"2600::1 web.internal web\n"
    b"# END tagdns\n"
)
USER = b"127.0.0.1 localhost\n# my own line\n10.1.1.1 printer \xe9t\xe9\r\n"


# --- rendering ---------------------------------------------------------------------------


def test_render_hosts_block_exact() -> None:
    assert render_hosts_block(VIEW, WHERE) == BLOCK


def test_render_dnsmasq_exact() -> None:
    assert render_dnsmasq(VIEW, "/etc/tagdns/dnsmasq.hosts") == (
        b"# Managed by tagdns (view us-east-1, zone internal): "
        b"read by dnsmasq through addn-hosts; this file is overwritten\n"
        b"54.1.0.1 api\n"
        b"10.0.0.1 web.internal web\n"
        b"10.0.0.2 web.internal web\n"
        b"2600::1 web.internal web\n"
    )


DNSMASQ_WHERE = "/etc/tagdns/dnsmasq.hosts"


@pytest.mark.parametrize(
    "current",
    [
        None,
        b"",
        b"\n \n",
        render_dnsmasq(VIEW, DNSMASQ_WHERE),
        render_dnsmasq(VIEW, DNSMASQ_WHERE, unsignalled=True),
        render_dnsmasq(View("eu-west-1", "fleet.internal", 3, ()), DNSMASQ_WHERE),
    ],
    ids=["absent", "empty", "blank", "ours", "ours-unsignalled", "ours-other-view"],
)
def test_replace_dnsmasq_replaces_what_tagdns_wrote(current: bytes | None) -> None:
    assert replace_dnsmasq(current, VIEW, DNSMASQ_WHERE) == render_dnsmasq(VIEW, DNSMASQ_WHERE)


@pytest.mark.parametrize(
    "current",
    [
        USER,
        USER + BLOCK,
        b"# a comment\n" + render_dnsmasq(VIEW, DNSMASQ_WHERE),
        b"# Managed by tagdns (view us-east-1, zone internal): something else\n",
        b"10.0.0.1 web\n",
    ],
    ids=["hosts-file", "hosts-file-with-block", "header-not-first", "other-header", "no-header"],
)
def test_replace_dnsmasq_refuses_a_file_tagdns_did_not_write(current: bytes) -> None:
    """The dnsmasq file is written whole: pointed at /etc/hosts it would erase localhost."""
    with pytest.raises(HostsFileError) as caught:
        replace_dnsmasq(current, VIEW, DNSMASQ_WHERE)
    message = str(caught.value)
    assert message.startswith(f"{DNSMASQ_WHERE}: not a dnsmasq file written by tagdns")
    assert "\n" not in message


def test_render_leaves_the_serial_out() -> None:
    """A new serial with the same names must not rewrite the file or reload dnsmasq."""
    later = View(VIEW.label, VIEW.zone, VIEW.serial + 1, VIEW.records)
    assert render_hosts_block(later, WHERE) == render_hosts_block(VIEW, WHERE)
    assert render_dnsmasq(later, WHERE) == render_dnsmasq(VIEW, WHERE)


def test_empty_view_is_an_empty_block() -> None:
    empty = View("public", "internal", 1, ())
    block = render_hosts_block(empty, WHERE)
    assert block.startswith(BEGIN_MARKER + b"\n# Managed")
    assert block.endswith(b"overwritten\n" + END_MARKER + b"\n")


@pytest.mark.parametrize(
    "line",
    [
        "1.2.3.4 evil\n127.0.0.1 bank",
        "1.2.3.4 evil\r",
        "1.2.3.4 name;rm",
        "1.2.3.4 ÿname",
        "1.2.3.4 $(reboot)",
        "1.2.3.4",
        "# BEGIN tagdns",
        "# END tagdns",
        "#end TAGDNS",
        "# comment\x00",
        "1.2.3.4 UPPER",
        "",
    ],
)
def test_render_refuses_anything_but_plain_lines(line: str) -> None:
    with pytest.raises(HostsFileError, match=r"^/etc/hosts: refusing to write"):
        render_block(["10.0.0.1 ok", line], WHERE)


# --- finding and merging -----------------------------------------------------------------


def test_no_block_appends_one() -> None:
    assert merge_block(USER, BLOCK, WHERE) == USER + BLOCK


def test_missing_final_newline_gets_one_before_the_block() -> None:
    assert merge_block(b"10.1.1.1 x", BLOCK, WHERE) == b"10.1.1.1 x\n" + BLOCK


def test_missing_file_and_empty_file_get_the_block_alone() -> None:
    assert merge_hosts(None, VIEW, WHERE) == BLOCK
    assert merge_hosts(b"", VIEW, WHERE) == BLOCK


def test_stale_block_is_replaced_in_place() -> None:
    stale = b"# BEGIN tagdns\n1.2.3.4 old\n# END tagdns\n"
    content = USER + stale + b"::1 ip6-localhost\n# tail, no newline"
    assert merge_block(content, BLOCK, WHERE) == (
        USER + BLOCK + b"::1 ip6-localhost\n# tail, no newline"
    )


def test_markers_with_blanks_and_crlf_are_markers() -> None:
    content = b"a\r\n  # BEGIN tagdns \t\r\nold\r\n# END tagdns\r\nz\r\n"
    assert merge_block(content, BLOCK, WHERE) == b"a\r\n" + BLOCK + b"z\r\n"


BOM = b"\xef\xbb\xbf"


def test_begin_marker_after_a_bom_on_line_one_is_a_marker_and_the_bom_stays() -> None:
    """An editor that saves UTF-8 with a byte-order mark puts it before line 1."""
    content = BOM + b"# BEGIN tagdns\nold\n# END tagdns\n127.0.0.1 x\n"
    assert find_block(content, WHERE) is not None
    merged = merge_block(content, BLOCK, WHERE)
    assert merged == BOM + BLOCK + b"127.0.0.1 x\n"
    assert merge_block(merged, BLOCK, WHERE) == merged
    assert remove_block(content, WHERE) == BOM + b"127.0.0.1 x\n"
    assert has_markers(content)


def test_a_bom_is_kept_before_user_lines_and_a_damaged_marker_after_it_is_named() -> None:
    content = BOM + b"127.0.0.1 localhost\n"
    assert merge_block(content, BLOCK, WHERE) == content + BLOCK
    with pytest.raises(HostsFileError, match=r"line 1 looks like a damaged '# BEGIN tagdns'"):
        find_block(BOM + b"#BEGIN tagdns\n# END tagdns\n", WHERE)


def test_a_bom_anywhere_but_the_start_is_not_skipped() -> None:
    """Only line 1 can carry a BOM; elsewhere those bytes are part of a user line."""
    content = b"a\n" + BOM + b"# BEGIN tagdns\n"
    assert find_block(content, WHERE) is None


def test_end_marker_on_the_last_line_without_newline() -> None:
    content = b"a\n# BEGIN tagdns\nold\n# END tagdns"
    assert merge_block(content, BLOCK, WHERE) == b"a\n" + BLOCK
    assert find_block(content, WHERE) is not None


def test_lines_that_merely_mention_tagdns_are_user_lines() -> None:
    content = b"# BEGIN tagdns-old was here\n# tagdns END\n10.0.0.9 tagdns\n"
    assert not has_markers(content)
    assert merge_block(content, BLOCK, WHERE) == content + BLOCK


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"# BEGIN tagdns\n# BEGIN tagdns\n# END tagdns\n",
            r"^/etc/hosts: line 2: a second '# BEGIN tagdns'",
        ),
        (
            b"# BEGIN tagdns\n# END tagdns\nx\n# BEGIN tagdns\n# END tagdns\n",
            r"^/etc/hosts: line 4: a second '# BEGIN tagdns'",
        ),
        (b"x\n# END tagdns\n", r"^/etc/hosts: line 2: no '# BEGIN tagdns' before '# END tagdns'"),
        (
            b"# END tagdns\n# BEGIN tagdns\n",
            r"^/etc/hosts: line 1: no '# BEGIN tagdns' before",
        ),
        (
            b"# BEGIN tagdns\n# END tagdns\n# END tagdns\n",
            r"^/etc/hosts: line 3: a second '# END tagdns'",
        ),
        (b"a\nb\n# BEGIN tagdns\nc\n", r"^/etc/hosts: line 3: '# BEGIN tagdns' without"),
        (b"#BEGIN tagdns\n#END tagdns\n", r"^/etc/hosts: line 1 looks like a damaged '# BEGIN"),
        (b"# begin TAGDNS\n", r"line 1 looks like a damaged '# BEGIN tagdns' marker"),
        (b"x\n##  END   tagdns\n", r"line 2 looks like a damaged '# END tagdns' marker"),
    ],
    ids=[
        "two-begins",
        "two-blocks",
        "end-alone",
        "end-before-begin",
        "two-ends",
        "begin-alone",
        "no-space",
        "case",
        "spacing",
    ],
)
def test_broken_markers_are_errors(content: bytes, message: str) -> None:
    with pytest.raises(HostsFileError, match=message):
        merge_block(content, BLOCK, WHERE)
    assert has_markers(content)


def test_errors_are_one_line() -> None:
    with pytest.raises(HostsFileError) as caught:
        merge_block(b"\n\n# BEGIN tagdns\n", BLOCK, WHERE)
    assert "\n" not in str(caught.value)


# --- properties --------------------------------------------------------------------------

# User content: arbitrary bytes, cut into lines that like to look like hosts lines,
# comments, CRLF endings and half-markers.
_FRAGMENTS = st.sampled_from(
    [b"#", b"# ", b"BEGIN", b"END", b" tagdns", b"tagdns", b"\r", b"\t", b" ", b"127.0.0.1"]
)
_LINE = st.lists(st.binary(max_size=12) | _FRAGMENTS, max_size=5).map(b"".join)
_TEXT_LIKE = st.lists(_LINE, max_size=8).map(b"\n".join)
user_content = (_TEXT_LIKE | st.binary(max_size=200)).filter(lambda c: not has_markers(c))
_HOSTS_LINE = st.builds("{} {}".format, ipv4s, names)
blocks = st.lists(_HOSTS_LINE, max_size=5).map(lambda lines: render_block(lines, WHERE))


@settings(max_examples=150, deadline=None)
@given(user_content, blocks, blocks)
def test_merge_keeps_every_user_byte_and_is_idempotent(
    content: bytes, block: bytes, other: bytes
) -> None:
    merged = merge_block(content, block, WHERE)
    span = find_block(merged, WHERE)
    assert span is not None
    assert merged[span.start : span.end] == block
    expected_prefix = content if not content or content.endswith(b"\n") else content + b"\n"
    assert merged[: span.start] == expected_prefix
    assert merged[span.end :] == b""
    assert remove_block(merged, WHERE) == expected_prefix
    # Twice is once; another block replaces it without touching the rest.
    assert merge_block(merged, block, WHERE) == merged
    replaced = merge_block(merged, other, WHERE)
    assert remove_block(replaced, WHERE) == expected_prefix
    assert merge_block(replaced, block, WHERE) == merged


@settings(max_examples=100, deadline=None)
@given(user_content, user_content, blocks, blocks)
def test_block_in_the_middle_keeps_both_sides(
    before: bytes, after: bytes, old: bytes, new: bytes
) -> None:
    if before and not before.endswith(b"\n"):
        before += b"\n"
    content = before + old + after
    assert merge_block(content, new, WHERE) == before + new + after


@settings(max_examples=30, deadline=None)
@given(documents(), user_content)
def test_merge_hosts_of_any_view(document: MappingDocument, content: bytes) -> None:
    view = public_view(document, "internal")
    merged = merge_hosts(content, view, WHERE)
    assert merge_hosts(merged, view, WHERE) == merged
    span = find_block(merged, WHERE)
    assert span is not None
    data_lines = merged[span.start : span.end].split(b"\n")[2:-2]
    assert len(data_lines) == sum(len(r.ipv4) + len(r.ipv6) for r in view.records)
