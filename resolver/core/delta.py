"""A reload that rebuilds only the names whose host entries changed.

A fleet's document changes a few instances at a time, yet a full load of
100,000 names parses, validates, builds and compiles every one of them: seconds
of a node's CPU for a handful of moved addresses. The agent keeps the text of
the host entries it last accepted (``keep_entries``). An entry of the new document with the very
same text was validated before, in the same regions, and its name's answers
are already in the zone. Only the names with an entry added or removed are
rebuilt, through the same ``host_entries``, ``build_view`` and
``compile_image`` as a full load, and patched into a copy of the zone's
dictionary.

The one answer that crosses names is a reverse name's PTR, which goes to the
first name in order that claims the address. The last load recorded which
reverse names more than one name claims; a change touching one of those, a
change to a quarter of the entries or more, or anything this module does not
check, returns None and the caller does a full load. A property test holds
every result equal to a full load of the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, NamedTuple

from resolver.core import wire
from resolver.core.document import (
    CANONICAL_HEAD,
    CANONICAL_HOSTS_END,
    HostEntry,
    MappingDocument,
    canonical_header,
    host_entries,
    make_document,
    unique_keys,
)
from resolver.core.names import zone_conflict
from resolver.core.views import CrossRegion, Omission, View, build_view
from resolver.core.zone import (
    PTR_TARGET_OFFSET,
    CompiledZone,
    ReplySettings,
    ZoneImage,
    compile_image,
    reverse_claims,
)
from resolver.errors import DocumentError, TagdnsError

MAX_CHANGED_SHARE = 0.25
"""Above this share of entries added or removed, a full load is as quick and simpler."""

_A_IN = struct.pack("!HH", wire.TYPE_A, wire.CLASS_IN)
_AAAA_IN = struct.pack("!HH", wire.TYPE_AAAA, wire.CLASS_IN)
_PTR_IN = struct.pack("!HH", wire.TYPE_PTR, wire.CLASS_IN)


class KeptEntries(NamedTuple):
    """The host entries of the load in force, as the next load compares with them."""

    text: bytes
    """Their text (inside the list's ``[{`` and ``}]``), compressed: at 100,000 names
    17 MB of JSON keeps as 1.5 MB."""
    hashes: array[int]
    """Each entry's ``hash``, sorted: what ``_mostly_new`` looks its sample up in."""


class Previous(NamedTuple):
    """What the load in force left for the next one."""

    zone: CompiledZone
    omitted: tuple[Omission, ...]
    regions: tuple[str, ...]
    """The regions its entries were validated against."""
    entries: KeptEntries
    shared_reverse: frozenset[bytes]


class Delta(NamedTuple):
    header: MappingDocument
    """The new document without its hosts."""
    zone: CompiledZone
    omitted: tuple[Omission, ...]
    names_text: str
    """The document's names, sorted, each once, one per line (``DocumentFacts``)."""
    hosts_span: tuple[int, int]
    shared_reverse: frozenset[bytes]
    rebuilt: int
    """How many names were rebuilt."""


class _Cut(NamedTuple):
    """A canonical document's entries cut apart, before anything about them is checked."""

    head_end: int
    span: tuple[int, int]
    texts: list[bytes]


_NAME_FIELD = re.compile(rb'"name":"([^"]*)"')
_UNSAFE = re.compile(rb"[ \t\n\r\\]")
"""Whitespace and escapes: neither is in a list of entries as the publisher writes it."""


_SAMPLES = 8
_SEPARATOR = b"},{"


def _cut(data: bytes, old_hashes: Sequence[int]) -> _Cut | None:
    """The entries' texts of a document laid out as the publisher writes it, cut at
    every ``},{``; None for any other layout, or when a sample of its entries says
    that nearly all of them are new (``_mostly_new``).

    A few C calls: cheap enough to count the changed entries before any check, so a
    document that changed too much for a rebuild costs little more than its full
    load. ``_checked`` then decides whether the cuts can be trusted.
    """
    head = CANONICAL_HEAD.match(data)
    if head is None:
        return None
    start = head.end() + 2
    end = data.find(CANONICAL_HOSTS_END, start)
    if end < 0 or _mostly_new(data, start, end, old_hashes):
        return None
    return _Cut(head.end(), (start, end), data[start:end].split(_SEPARATOR))


def _mostly_new(data: bytes, start: int, end: int, old_hashes: Sequence[int]) -> bool:
    """True when nearly every entry of a few spread over ``data[start:end]`` is missing
    from the last load's (``KeptEntries.hashes``).

    A redeployed fleet changes every entry. Cutting both lists into 100,000 pieces
    and comparing them as sets only to learn that added 0.13 to 0.2 s to every such
    full load; decompressing the old text to search it for eight entries, 0.05 s;
    eight lookups of their hashes take microseconds. The sample only chooses the
    path: a misleading one (a hash shared by two texts included) means a full load
    where a rebuild would do, or the exact count below. Once three times
    ``MAX_CHANGED_SHARE`` reaches 1, it never decides.
    """
    missing = 0
    for index in range(_SAMPLES):
        at = data.find(_SEPARATOR, start + (end - start) * index // _SAMPLES, end)
        if at < 0:
            return False  # too few entries to sample: the exact count will do
        following = data.find(_SEPARATOR, at + 3, end)
        digest = hash(data[at + 3 : end if following < 0 else following])
        found = bisect_left(old_hashes, digest)
        missing += found == len(old_hashes) or old_hashes[found] != digest
    return missing > 3 * MAX_CHANGED_SHARE * _SAMPLES


def _checked(data: bytes, cut: _Cut) -> tuple[MappingDocument, list[bytes]] | None:
    """The document without its hosts and each entry's name, if the cuts of ``_cut``
    fell between entries the way the publisher writes them; None otherwise.

    The cuts are checked, not assumed: an entry's text is trusted only if the last
    load accepted the very same text, and every other one is decoded on its own.
    A cut in the wrong place (inside a string, or inside a nested value) leaves
    the piece before it with an open string or bracket, which does not decode, so
    a wrong cut always ends in a full load. With no whitespace and no escapes in
    the list, and only valid entries, ``"name":"`` occurs once per entry: in its
    name field.
    """
    start, end = cut.span
    if _UNSAFE.search(data, start, end):
        return None
    header = canonical_header(data, cut.head_end, end + 2)
    if header is None:
        return None
    names = _NAME_FIELD.findall(data, start, end)
    return (header, names) if len(names) == len(cut.texts) else None


def rebuild_changed(
    previous: Previous,
    data: bytes,
    view: str,
    cross_region: CrossRegion,
    reply: ReplySettings,
) -> Delta | None:
    """The zone for ``data``, rebuilt from ``previous`` where entries changed; None
    when a full load is needed (which also words any error). The zone must not be
    authoritative: its empty non-terminals depend on every name."""
    if reply.authoritative:
        return None
    cut = _cut(data, previous.entries.hashes)
    if cut is None:
        return None
    old_entries = zlib.decompress(previous.entries.text)
    texts = cut.texts
    new_texts = set(texts)
    if len(new_texts) != len(texts):
        return None  # an entry listed twice
    old_list = old_entries.split(_SEPARATOR)
    del old_entries
    # Entries in both, counted without building the old set or the differences: a
    # document that changed too much is told apart at the least cost (the last load's
    # entries were accepted, so none is listed twice).
    unchanged = len(new_texts.intersection(old_list))
    changes = len(texts) - unchanged + len(old_list) - unchanged
    if changes > MAX_CHANGED_SHARE * max(len(texts), len(old_list), 1):
        return None
    old_texts = set(old_list)
    checked = _checked(data, cut)
    if checked is None:
        return None
    header, entry_names = checked
    if header.regions != previous.regions:
        return None
    added = [text for text in texts if text not in old_texts]
    removed = [text for text in old_list if text not in new_texts]
    try:
        added_hosts = host_entries(_decoded(added), header.regions)
        removed_hosts = host_entries(_decoded(removed), header.regions)
        changed_names = {host.name for host in (*added_hosts, *removed_hosts)}
        # Every entry is valid now (unchanged ones were last time): each name is its own,
        # in ASCII.
        changed = {name.encode() for name in changed_names}
        at = [i for i, name in enumerate(entry_names) if name in changed]
        new_hosts = host_entries(_decoded([texts[i] for i in at]), header.regions)
        old_hosts = [host for i, host in zip(at, new_hosts, strict=True) if texts[i] in old_texts]
        old_hosts += removed_hosts
        old_view = _view_of(old_hosts, header, view, previous.zone.zone, cross_region)
        new_view = _view_of(new_hosts, header, view, previous.zone.zone, cross_region)
    except TagdnsError:
        return None
    patched = _patched_answers(previous, changed_names, old_view, new_view, reply)
    if patched is None:
        return None
    answers, shared = patched
    names_served = previous.zone.names - len(old_view.records) + len(new_view.records)
    empty = ZoneImage(dataclasses.replace(new_view, records=()), reply).materialize()
    zone = dataclasses.replace(empty, answers=answers, names=names_served)
    omitted = _merged_omissions(previous.omitted, new_view.omitted, changed_names, zone.zone)
    names_text = b"\n".join(dict.fromkeys(sorted(entry_names))).decode("ascii")
    shared_reverse = frozenset(shared)
    return Delta(header, zone, omitted, names_text, cut.span, shared_reverse, len(changed_names))


def keep_entries(data: bytes, span: tuple[int, int]) -> KeptEntries:
    """The host entries of ``data`` (``span``, see ``DecodedDocument.hosts_span``), kept.

    About 0.1 s of CPU at 100,000 names, which the agent spends once the new zone
    serves; zlib lets the GIL go meanwhile.
    """
    start, end = span
    text = memoryview(data)[start:end]
    hashes = array("q", sorted(map(hash, data[start:end].split(_SEPARATOR))))
    return KeptEntries(zlib.compress(text, 1), hashes)


def _decoded(texts: list[bytes]) -> list[object]:
    """Each entry's text decoded on its own (see ``_checked``): a DocumentError if one fails."""
    try:
        return [json.loads(b"{" + text + b"}", object_pairs_hook=unique_keys) for text in texts]
    except (ValueError, RecursionError):
        raise DocumentError("an entry of hosts is not valid JSON") from None


def _view_of(
    hosts: list[HostEntry], header: MappingDocument, view: str, zone: str, cross: CrossRegion
) -> View:
    document = make_document(
        serial=header.serial,
        generated_at=header.generated_at,
        tag_key=header.tag_key,
        regions=header.regions,
        hosts=hosts,
    )
    return build_view(document, view, zone, cross)


def _patched_answers(
    previous: Previous,
    changed_names: set[str],
    old_view: View,
    new_view: View,
    reply: ReplySettings,
) -> tuple[dict[bytes, Any], set[bytes]] | None:
    """A copy of the zone's answers with the changed names' answers replaced."""
    old_answers = previous.zone.answers
    zone_wire = previous.zone.zone_wire
    rebuilt = compile_image(new_view, reply).materialize().answers
    answers = dict(old_answers)
    for name in changed_names:
        if zone_conflict(name, previous.zone.zone) is not None:
            # Refused, so it has no answers of its own; yet ``web1.internal`` spells
            # the qualified name of ``web1``, whose answers must stay.
            continue
        bare = wire.encode_name(name)
        qualified = bare[:-1] + zone_wire
        for key in (bare + _A_IN, bare + _AAAA_IN, qualified + _A_IN, qualified + _AAAA_IN):
            answers.pop(key, None)
    for key, value in rebuilt.items():
        if not key.endswith(_PTR_IN):
            answers[key] = value
    old_claims = reverse_claims(old_view.records, zone_wire)
    new_claims = reverse_claims(new_view.records, zone_wire)
    shared = set(previous.shared_reverse)
    for reverse in old_claims.keys() | new_claims.keys():
        if reverse in previous.shared_reverse:
            return None  # names this reload does not see may claim it too
        key = reverse + _PTR_IN
        claimants: Sequence[str] = new_claims.get(reverse, ())
        kept = old_answers.get(key)
        if kept is not None and reverse not in old_claims:
            # Claimed by a name whose entries did not change: it claims it still.
            assert isinstance(kept, bytes)
            claimants = [*claimants, _bare_name(kept[PTR_TARGET_OFFSET:], zone_wire)]
        if not claimants:
            answers.pop(key, None)
            continue
        if len(claimants) > 1:
            shared.add(reverse)
        if min(claimants) in new_claims.get(reverse, ()):
            answers[key] = rebuilt[key]
        # Otherwise the unchanged name keeps the PTR it has in the copy.
    return answers, shared


def _bare_name(qualified: bytes, zone_wire: bytes) -> str:
    """``web1`` from the wire form of ``web1.<zone>``."""
    labels = []
    at, end = 0, len(qualified) - len(zone_wire)
    while at < end:
        length = qualified[at]
        labels.append(qualified[at + 1 : at + 1 + length].decode("ascii"))
        at += 1 + length
    return ".".join(labels)


def _merged_omissions(
    previous: tuple[Omission, ...],
    rebuilt: tuple[Omission, ...],
    changed_names: set[str],
    zone: str,
) -> tuple[Omission, ...]:
    """The view's omissions in a full load's order: name collisions first, each part by name."""
    kept = [omission for omission in previous if omission.name not in changed_names]
    if not rebuilt:
        return tuple(kept)
    merged = [*kept, *rebuilt]
    merged.sort(key=lambda o: (zone_conflict(o.name, zone) is None, o.name))
    return tuple(merged)
