"""Validation and normalisation of host names taken from tag values.

Tag values are written by anyone allowed to tag an instance, so they are hostile
until proven otherwise: a name must be plain LDH labels and must not claim a name
the node relies on (localhost, reverse zones, the zone suffix itself, AWS's own
names) or a name of the public DNS (``github.com``, the agent's own S3 endpoint).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from resolver.core.public_tlds import PUBLIC_TLDS
from resolver.errors import InvalidName

MAX_LABEL_OCTETS = 63
MAX_NAME_OCTETS = 253

_LABEL_TEXT = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_LABEL = re.compile(_LABEL_TEXT + r"\Z")
_LDH_NAME = re.compile(rf"{_LABEL_TEXT}(?:\.{_LABEL_TEXT})*\Z")
"""A whole name of valid labels: the common case, checked in one step."""
_RESERVED_LAST_LABELS = frozenset({"localhost", "arpa", "invalid", "local"})
AWS_NAMESPACES = ("ec2.internal", "compute.internal")
"""AWS's own private names (ip-10-0-0-1.ec2.internal, ip-....<region>.compute.internal)
must keep resolving: no tag may claim a name under them, bare or qualified, and no
authoritative zone denies them."""
_AWS_CONFLICT = "would shadow AWS's own names under ec2.internal or compute.internal"


@dataclass(frozen=True)
class NameRejection:
    """One part of a tag value that is not a usable name, and why."""

    value: str
    reason: str


_ASCII_SPACE = " \t\n\r\x0b\x0c"
"""What may surround a name and be dropped. ``str.strip`` would also drop no-break
and other Unicode spaces and the separators U+001C to U+001F, and so accept a
tag that is not plain ASCII."""


def normalise_name(raw: str) -> str:
    """Strip and lowercase; ASCII only so lowercasing cannot change a name's shape."""
    stripped = raw.strip(_ASCII_SPACE)
    if not stripped.isascii():
        raise InvalidName("contains non-ASCII characters")
    return stripped.lower()


def check_label(label: str) -> None:
    """Raise InvalidName unless label is one LDH label of 1 to 63 octets."""
    if not label:
        raise InvalidName("has an empty label")
    if len(label) > MAX_LABEL_OCTETS:
        raise InvalidName(f"has a label longer than {MAX_LABEL_OCTETS} octets")
    if not _LABEL.match(label):
        if label.startswith("-") or label.endswith("-"):
            raise InvalidName("has a label that starts or ends with a hyphen")
        raise InvalidName("has characters other than letters, digits and hyphens")


def check_zone(zone: str) -> str:
    """Validate a zone suffix such as ``internal``; returns it normalised, or raises
    InvalidName with a reason that follows the zone's own text.

    The zone is held to the rules of a name: serving or denying (``authoritative``)
    a zone such as ``in-addr.arpa``, ``localhost`` or ``ec2.internal`` would take
    over names the node relies on, and a public top-level domain (``com``) would
    put every fleet name in the public DNS's namespace.
    """
    normalised = normalise_name(zone)
    if not normalised or len(normalised) > MAX_NAME_OCTETS:
        raise InvalidName(f"must be 1 to {MAX_NAME_OCTETS} octets")
    for label in normalised.split("."):
        check_label(label)
    last = normalised.rpartition(".")[2]
    if last in _RESERVED_LAST_LABELS:
        raise InvalidName(f"ends in the reserved name {last!r}")
    if last.isdigit():
        raise InvalidName("ends in an all-numeric label")
    if _under_aws(normalised):
        raise InvalidName(_AWS_CONFLICT)
    if normalised in PUBLIC_TLDS:
        # Every name would be served under a public top-level domain (web1.com): the
        # refusal of public names in tags would count for nothing.
        raise InvalidName(
            "is a top-level domain of the public DNS; use a private zone such as "
            "'internal' or a domain of your own"
        )
    return normalised


def _under(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


_AWS_DOTTED = tuple("." + namespace for namespace in AWS_NAMESPACES)


def _under_aws(name: str) -> bool:
    return name in AWS_NAMESPACES or name.endswith(_AWS_DOTTED)


def longest_name(zone: str) -> int:
    """The longest name that can also be served as ``name.<zone>`` (octets)."""
    return MAX_NAME_OCTETS - 1 - len(zone)


def shadows_public_name(name: str) -> bool:
    """Whether ``name`` has two or more labels and ends in a top-level domain of the
    public DNS: served bare, it would take that name over on every node.

    A single label (``app``, ``dev``) does not: the agent answers that one name,
    and no name under the domain.
    """
    head, _, last = name.rpartition(".")
    return bool(head) and last in PUBLIC_TLDS


_LAST_OF_SEVERAL_LABELS = re.compile(r"\.([a-z0-9-]+)$", re.MULTILINE)


def any_shadows_public_name(names: Iterable[str]) -> bool:
    """``any(map(shadows_public_name, names))`` for normal names, in C: a view of
    100,000 names, most of one label, pays about 3 ms rather than 25."""
    return not PUBLIC_TLDS.isdisjoint(_LAST_OF_SEVERAL_LABELS.findall("\n".join(names)))


def zone_conflict(name: str, zone: str) -> str | None:
    """Why a valid ``name`` cannot be served with ``zone``, or None when it can.

    Checked where a name enters a view, not where a document is read: a document
    that holds such a name (from an older publisher, or written by hand) is still
    read, and only that name is left out, with this reason.
    """
    if _under(name, zone):
        return f"ends in the zone suffix {zone!r}"
    if _under_aws(name) or _under_aws(f"{name}.{zone}"):
        return _AWS_CONFLICT
    if shadows_public_name(name):
        return (
            "would shadow a name in the public DNS "
            f"(.{name.rpartition('.')[2]} is a top-level domain)"
        )
    if len(name) > longest_name(zone):
        return (
            f"is too long to serve as name.{zone} ({len(name) + 1 + len(zone)} octets, "
            f"at most {MAX_NAME_OCTETS})"
        )
    return None


def conflict_screen(zone: str) -> tuple[str, ...]:
    """Suffixes that every name ``zone_conflict`` refuses for ``zone`` ends with, but
    for names longer than ``longest_name(zone)`` and those ``shadows_public_name``
    finds (1,490 suffixes would make the screen slower than the check).

    A screen, not the verdict: ``name.endswith(screen)`` is one C call, so a view of
    100,000 names asks ``zone_conflict`` only for the few that match (which it
    may then accept: "xec2" ends with "ec2" but is no conflict).
    """
    suffixes = [zone, *AWS_NAMESPACES]
    qualified_tail = "." + zone
    for namespace in AWS_NAMESPACES:
        dotted = "." + namespace
        if qualified_tail.endswith(dotted):
            return ("",)  # the zone itself is under AWS: every name conflicts
        if dotted.endswith(qualified_tail):
            # name.<zone> is under the namespace only if name ends with what precedes the zone.
            suffixes.append(dotted[1 : -len(qualified_tail)])
    return tuple(suffixes)


def plain_name_pattern(end: str) -> str:
    """Regular-expression text for a name ``is_plain_name`` accepts, where ``end`` follows.

    One expression rather than a match and three string tests, so that a name can
    be checked inside a larger expression (``resolver.core.canonical_reader``
    reads a whole document's entries in one pass). The lookaheads say, in order:
    at most 253 octets; no reserved or all-numeric last label; not under AWS's
    namespaces. The characters are those of LDH labels, which the last part checks.
    """
    reserved = "|".join(sorted(_RESERVED_LAST_LABELS))
    aws = "|".join(re.escape(namespace) for namespace in AWS_NAMESPACES)
    return (
        rf"(?=[a-z0-9.-]{{1,{MAX_NAME_OCTETS}}}{end})"
        rf"(?!(?:[a-z0-9.-]*\.)?(?:{reserved}|[0-9]+){end})"
        rf"(?!(?:[a-z0-9.-]*\.)?(?:{aws}){end})"
        rf"{_LABEL_TEXT}(?:\.{_LABEL_TEXT})*(?={end})"
    )


_PLAIN_NAME = re.compile(plain_name_pattern(r"\Z"))


def is_plain_name(raw: str) -> bool:
    """True when ``raw`` is a valid name already in normal form (no zone checks).

    The document parser's fast path: a published document holds only normal
    names, so one regular expression settles almost every name, and
    ``validate_name`` is left to explain the rare one that fails.
    """
    return _PLAIN_NAME.match(raw) is not None


def validate_name(raw: str, zone: str | None = None) -> str:
    """Return the normalised name or raise InvalidName with a one-line reason.

    ``zone`` is the suffix the agent adds; a name already ending in it would
    shadow or duplicate the qualified form, so it is refused.
    """
    name = normalise_name(raw)
    if not name:
        raise InvalidName("is empty")
    if len(name) > MAX_NAME_OCTETS:
        raise InvalidName(f"is longer than {MAX_NAME_OCTETS} octets")
    if _LDH_NAME.match(name) is None:
        for label in name.split("."):
            check_label(label)  # raises with the reason; the fast check only says no
    last = name.rpartition(".")[2]
    if last in _RESERVED_LAST_LABELS:
        raise InvalidName(f"ends in the reserved name {last!r}")
    if last.isdigit():
        raise InvalidName("ends in an all-numeric label (looks like an address)")
    if zone is not None:
        conflict = zone_conflict(name, zone)
        if conflict is not None:
            raise InvalidName(conflict)
    elif _under_aws(name):
        raise InvalidName(_AWS_CONFLICT)
    return name


def split_tag_value(value: str, zone: str | None = None) -> tuple[list[str], list[NameRejection]]:
    """Split ``web1, api`` into valid names and rejected parts.

    Empty parts (``a,,b`` or a trailing comma) are ignored; duplicates are kept once.
    A value with no names at all is itself a rejection, so an operator sees it.
    """
    names: list[str] = []
    rejections: list[NameRejection] = []
    for part in value.split(","):
        if not part.strip(_ASCII_SPACE):
            continue
        try:
            name = validate_name(part, zone)
        except InvalidName as exc:
            rejections.append(NameRejection(part, f"name {part.strip(_ASCII_SPACE)!r} {exc}"))
            continue
        if name not in names:
            names.append(name)
    if not names and not rejections:
        rejections.append(NameRejection(value, "tag value holds no names"))
    return names, rejections
