"""The managed block of a hosts file, and the dnsmasq ``addn-hosts`` file, as bytes.

tagdns owns the lines between ``# BEGIN tagdns`` and ``# END tagdns`` and nothing
else: every other byte of the file (comments, blank lines, CRLF endings, text in
any encoding) is kept exactly. Everything here works on bytes for that reason.

Markers are matched as whole lines (surrounding blanks ignored, and a UTF-8 BOM
before line 1, which stays where it is). A file with no
block gets one appended; a file with one BEGIN followed by one END has it
replaced; anything else (two BEGINs, an END first, a BEGIN never closed, a
damaged marker such as ``#BEGIN TAGDNS``) is an error, not a guess: the file
stays as it is until someone fixes it by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from resolver.core.hosts_text import hosts_lines
from resolver.core.views import View
from resolver.errors import HostsFileError

BEGIN_MARKER = b"# BEGIN tagdns"
END_MARKER = b"# END tagdns"

_BLANKS = b" \t\r\v\f"
_NEAR_MARKERS = {b"begin tagdns": BEGIN_MARKER, b"end tagdns": END_MARKER}
# A data line: one address, then one or more names; nothing a resolver could read
# as anything else, and no byte that could end the line or the block early.
_DATA_LINE = re.compile(rb"[0-9A-Fa-f:.]+(?: [a-z0-9][a-z0-9.-]*)+\Z")
_COMMENT_LINE = re.compile(rb"#[ -~]*\Z")


@dataclass(frozen=True)
class BlockSpan:
    """Byte offsets of the managed block: from the BEGIN line to the end of the END line."""

    start: int
    end: int


def _marker(line: bytes) -> bytes | None:
    """BEGIN_MARKER or END_MARKER for a marker line, None for any other line.

    Raises ValueError for a line that is almost a marker (case, spacing, missing
    space after ``#``): it was meant as one, and guessing either way could eat
    user lines or leave a second block behind.
    """
    stripped = line.strip(_BLANKS)
    if stripped in (BEGIN_MARKER, END_MARKER):
        return stripped
    if stripped.startswith(b"#"):
        words = b" ".join(stripped.lstrip(b"#").split()).lower()
        if words in _NEAR_MARKERS:
            raise ValueError(_NEAR_MARKERS[words])
    return None


UTF8_BOM = b"\xef\xbb\xbf"


def _lines(content: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(line number, offset, line) for each line, a UTF-8 BOM before line 1 left out.

    An editor saving "UTF-8 with BOM" puts the mark before the first line; a
    marker there must still be one. The BOM's bytes are outside the line's offset,
    so a block replaced from line 1 keeps them, byte for byte.
    """
    offset = 0
    for number, raw in enumerate(content.split(b"\n"), start=1):
        line_start, offset = offset, offset + len(raw) + 1
        if number == 1 and raw.startswith(UTF8_BOM):
            yield number, len(UTF8_BOM), raw[len(UTF8_BOM) :]
        else:
            yield number, line_start, raw


def find_block(content: bytes, where: str) -> BlockSpan | None:
    """The managed block of ``content``, None when there is none.

    Raises HostsFileError naming ``where`` and the line for duplicate, unpaired,
    out-of-order or damaged markers.
    """
    begin: tuple[int, int] | None = None  # (line number, offset)
    span: BlockSpan | None = None
    for number, line_start, line in _lines(content):
        offset = line_start + len(line) + 1
        try:
            marker = _marker(line)
        except ValueError as exc:
            raise HostsFileError(
                f"{where}: line {number} looks like a damaged {exc.args[0].decode()!r} "
                "marker; fix or remove it by hand"
            ) from None
        if marker == BEGIN_MARKER:
            if begin is not None or span is not None:
                raise HostsFileError(
                    f"{where}: line {number}: a second {BEGIN_MARKER.decode()!r}; "
                    "keep one tagdns block and remove the other by hand"
                )
            begin = (number, line_start)
        elif marker == END_MARKER:
            if begin is None:
                what = "a second" if span is not None else f"no {BEGIN_MARKER.decode()!r} before"
                raise HostsFileError(
                    f"{where}: line {number}: {what} {END_MARKER.decode()!r}; "
                    "fix the tagdns block by hand"
                )
            span = BlockSpan(begin[1], min(offset, len(content)))
            begin = None
    if begin is not None:
        raise HostsFileError(
            f"{where}: line {begin[0]}: {BEGIN_MARKER.decode()!r} without "
            f"{END_MARKER.decode()!r} after it; fix the tagdns block by hand"
        )
    return span


def has_markers(content: bytes) -> bool:
    """True when any line of ``content`` is a marker or damaged marker (for tests and tools)."""
    for _, _, line in _lines(content):
        try:
            if _marker(line) is not None:
                return True
        except ValueError:
            return True
    return False


def _checked_lines(lines: Sequence[str], where: str) -> list[bytes]:
    """Every line as ASCII bytes, each a comment or a plain ``address name...`` line."""
    checked: list[bytes] = []
    for text in lines:
        try:
            line = text.encode("ascii")
        except UnicodeEncodeError:
            raise HostsFileError(f"{where}: refusing to write a non-ASCII line {text!r}") from None
        is_comment = _COMMENT_LINE.match(line) is not None
        if not (is_comment or _DATA_LINE.match(line)) or _has_marker(line):
            raise HostsFileError(f"{where}: refusing to write the line {text!r}")
        checked.append(line)
    return checked


def _has_marker(line: bytes) -> bool:
    try:
        return _marker(line) is not None
    except ValueError:
        return True


def render_block(lines: Sequence[str], where: str) -> bytes:
    """The managed block holding ``lines`` (comments or hosts lines), markers included."""
    body = _checked_lines(lines, where)
    return b"\n".join([BEGIN_MARKER, *body, END_MARKER]) + b"\n"


def merge_block(content: bytes, block: bytes, where: str) -> bytes:
    """``content`` with its managed block replaced by ``block``, or ``block`` appended.

    Every byte outside the block is kept; when appending to content that does not
    end with a newline, one is added first so the BEGIN marker starts its own line.
    """
    span = find_block(content, where)
    if span is not None:
        return content[: span.start] + block + content[span.end :]
    if content and not content.endswith(b"\n"):
        content += b"\n"
    return content + block


def remove_block(content: bytes, where: str) -> bytes:
    """``content`` without its managed block (what the user owns)."""
    span = find_block(content, where)
    if span is None:
        return content
    return content[: span.start] + content[span.end :]


def _header(view: View, purpose: str) -> str:
    return f"# Managed by tagdns (view {view.label}, zone {view.zone}): {purpose}"


def render_hosts_block(view: View, where: str) -> bytes:
    """The view as the managed block of a hosts file such as /etc/hosts.

    The document's serial is left out on purpose: a change elsewhere in the fleet
    that leaves this view's names alone must not rewrite the file.
    """
    lines = [_header(view, "edits inside this block are overwritten"), *hosts_lines(view)]
    return render_block(lines, where)


def merge_hosts(content: bytes | None, view: View, where: str) -> bytes:
    """The new bytes of a hosts file (None: it does not exist yet) for ``view``."""
    return merge_block(content or b"", render_hosts_block(view, where), where)


UNSIGNALLED_NOTE = "# tagdns: dnsmasq could not be told to re-read this file; the next run tells it"
"""The last line of a dnsmasq file whose SIGHUP failed: the next write renders the file
without it, sees a change, and signals again, whichever process writes it next."""


_DNSMASQ_PURPOSE = "read by dnsmasq through addn-hosts; this file is overwritten"


def render_dnsmasq(view: View, where: str, *, unsignalled: bool = False) -> bytes:
    """The view as a whole dnsmasq ``addn-hosts`` file (tagdns owns every line);
    ``unsignalled`` adds ``UNSIGNALLED_NOTE``."""
    lines = [
        _header(view, _DNSMASQ_PURPOSE),
        *hosts_lines(view),
        *([UNSIGNALLED_NOTE] if unsignalled else []),
    ]
    return b"\n".join(_checked_lines(lines, where)) + b"\n"


def is_tagdns_dnsmasq(content: bytes) -> bool:
    """Whether ``content`` is a dnsmasq file tagdns wrote: its first line is the header
    ``render_dnsmasq`` puts there (for any view and zone)."""
    first = content.split(b"\n", 1)[0]
    return first.startswith(b"# Managed by tagdns (") and first.endswith(
        b"): " + _DNSMASQ_PURPOSE.encode("ascii")
    )


def dnsmasq_refusal(current: bytes | None) -> str | None:
    """Why the dnsmasq file ``current`` (None: no file yet) must not be replaced; None
    when it may be: it is missing or blank, or tagdns wrote it.

    The file is written whole, so one named by mistake (``/etc/hosts`` as ``--output``
    or as ``[hosts] dnsmasq_file``) would lose every line of its own.
    """
    if current is None or not current.strip() or is_tagdns_dnsmasq(current):
        return None
    return (
        "not a dnsmasq file written by tagdns (its first line is not tagdns's header), "
        "so it is not replaced whole; name another file, or remove or empty this one first"
    )


def replace_dnsmasq(
    current: bytes | None, view: View, where: str, *, unsignalled: bool = False
) -> bytes:
    """The new dnsmasq file for ``view`` in place of ``current``; HostsFileError naming
    ``where`` for a file tagdns did not write (``dnsmasq_refusal``)."""
    refusal = dnsmasq_refusal(current)
    if refusal is not None:
        raise HostsFileError(f"{where}: {refusal}")
    return render_dnsmasq(view, where, unsignalled=unsignalled)
