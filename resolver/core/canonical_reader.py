"""Reading a document laid out as the publisher writes it, without a JSON decoder.

A full load of 100,000 hosts spent about half its parse in ``json.loads``
building a dictionary per host and in checking each field of each host in
Python. A document in canonical layout (``MappingDocument.to_bytes``) writes
every entry in one form: keys sorted, no whitespace, no escapes. One regular
expression, built from the same field patterns the validator uses, then finds
and validates all the entries in a single pass in C, and the rest is work on
whole columns (``map``, ``zip``, sets) rather than a Python loop per host.

The reader is a fast path, never a judge. Anything it does not recognise
returns None and the caller takes the general parse, which gives the verdict
and words the error:
- another layout or an escape anywhere in the entries;
- a field the expression does not clear (an address not in canonical form, a
  name that is not plain, an IPv6 address list that does not validate);
- entries out of canonical order, or one listed twice.

What it returns always equals what the general parse returns for the same
bytes; a property test and the fuzz target ``document`` hold it to that.
"""

from __future__ import annotations

import dataclasses
import re
from itertools import compress, islice, repeat
from operator import eq, itemgetter, le
from typing import NamedTuple

from resolver.core.addresses import CANONICAL_IPV4_TEXT, PLAINLY_CANONICAL_IPV6
from resolver.core.document import (
    AZ_TEXT,
    CANONICAL_HEAD,
    CANONICAL_HOSTS_END,
    INSTANCE_ID_TEXT,
    REGION_TEXT,
    HostEntry,
    MappingDocument,
    canonical_header,
    ipv6_list,
)
from resolver.core.names import plain_name_pattern

_IPV6_ITEMS = r'(?:"[0-9a-f:.]+",)*"[0-9a-f:.]+"'
"""A non-empty list body of quoted IPv6 texts; ``ipv6_list`` validates each."""

_ENTRY = re.compile(
    rf'\{{"az":"({AZ_TEXT})","instance_id":"({INSTANCE_ID_TEXT})",'
    rf'"ipv6":\[((?:{_IPV6_ITEMS})?)\],'
    rf'"name":"({plain_name_pattern(chr(34))})",'
    rf'"private_ipv4":"({CANONICAL_IPV4_TEXT})",'
    rf'"public_ipv4":(?:null|"({CANONICAL_IPV4_TEXT})"),'
    rf'"region":"({REGION_TEXT})"\}}'
)
"""One host entry as ``to_bytes`` writes it. Its fields hold no brace, which ``_tiled``
relies on. Groups: az, instance, IPv6 list body, name, private, public (empty for
null), region."""


class CanonicalRead(NamedTuple):
    document: MappingDocument
    hosts_span: tuple[int, int]
    """As ``DecodedDocument.hosts_span``: the entries inside ``[{`` and ``}]``."""


def read_canonical(data: bytes) -> CanonicalRead | None:
    """The validated document and where its entries lie; None unless ``data`` is in
    canonical layout with every entry cleared here (the general parse then decides).
    """
    head = CANONICAL_HEAD.match(data)
    if head is None or not data.isascii():
        return None
    opening = head.end()  # the hosts list's "["
    closing = data.find(CANONICAL_HOSTS_END, opening) + 1  # its "]"
    if closing <= 0:
        return None
    header = canonical_header(data, opening, closing + 1)
    if header is None:
        return None
    text = data.decode("ascii")
    start, end = opening + 1, closing
    rows = _ENTRY.findall(text, start, end)
    if not rows or not _tiled(text, start, end, len(rows)):
        return None
    hosts = _hosts(rows, header.regions)
    if hosts is None:
        return None
    return CanonicalRead(dataclasses.replace(header, hosts=hosts), (start + 1, end - 1))


def _tiled(text: str, start: int, end: int, count: int) -> bool:
    """True when the ``count`` matches of ``_ENTRY`` make up ``text[start:end]``, joined by commas.

    Each match opens with the one ``{`` and closes with the one ``}`` it holds. If
    the span holds no other brace, an occurrence of ``},{`` can only be a comma
    alone between two consecutive matches, so ``count - 1`` of them means every
    gap is a comma; a span that opens with ``{`` and closes with ``}`` leaves
    nothing before the first match or after the last. Five C calls, no loop.
    """
    return (
        text[start] == "{"
        and text[end - 1] == "}"
        and text.count("{", start, end) == count
        and text.count("}", start, end) == count
        and text.count("},{", start, end) == count - 1
    )


_COLUMNS = tuple(itemgetter(index) for index in range(7))


def _hosts(
    rows: list[tuple[str, str, str, str, str, str, str]], regions: tuple[str, ...]
) -> tuple[HostEntry, ...] | None:
    """The entries as ``HostEntry`` values, or None if any needs the general parse.

    As the general parse does, each region and availability zone is one string
    object shared by every entry that names it: it saves megabytes for the life
    of the zone.
    """
    azs, instances, ipv6_texts, names, privates, publics, region_names = (
        list(map(column, rows)) for column in _COLUMNS
    )
    if not _in_canonical_order(names, region_names, instances):
        return None
    shared_region = {region: region for region in regions}
    if not shared_region.keys() >= set(region_names):
        return None  # a region the document does not list
    shared_az = {az: az for az in set(azs)}
    ipv6 = _ipv6_column(ipv6_texts)
    if ipv6 is None:
        return None
    # tuple.__new__ directly: HostEntry._make checks the length in Python, once an entry.
    return tuple(
        map(
            tuple.__new__,
            repeat(HostEntry),
            zip(
                names,
                map(shared_region.__getitem__, region_names),
                instances,
                map(shared_az.__getitem__, azs),
                privates,
                [public or None for public in publics],
                ipv6,
                strict=True,
            ),
        )
    )


def _ipv6_column(texts: list[str]) -> list[tuple[str, ...]] | None:
    """Each entry's IPv6 addresses from its list body (quoted items of ``[0-9a-f:.]``
    joined by commas, ``_IPV6_ITEMS``: no JSON to decode), as ``ipv6_list`` gives them;
    None if one does not validate.

    Most lists a fleet carries hold one address canonical at sight, which
    ``ipv6_list`` returns as it is: one C pass picks those out, and only the others
    are given to it (25,000 lists: 48 ms, against 68 ms with one call each).
    """
    if not any(texts):
        return [()] * len(texts)
    bodies = [text[1:-1] for text in texts if text]
    plain = map(PLAINLY_CANONICAL_IPV6.match, bodies)
    try:
        lists = iter(
            [
                (body,) if match is not None else ipv6_list(body.split('","'))
                for body, match in zip(bodies, plain, strict=True)
            ]
        )
    except ValueError:
        return None
    return [next(lists) if text else () for text in texts]


def _in_canonical_order(names: list[str], regions: list[str], instances: list[str]) -> bool:
    """True when the entries are sorted by (name, region, instance) with no name
    listed twice for one instance: exactly the order ``make_document`` gives them.

    Names are compared as a column; only where a name repeats (one name on several
    instances) are regions and instances looked at.
    """
    if not all(map(le, names, islice(names, 1, None))):
        return False
    repeats = list(compress(range(len(names)), map(eq, names, islice(names, 1, None))))
    for index in repeats:
        if (regions[index], instances[index]) >= (regions[index + 1], instances[index + 1]):
            return False
    in_groups = sorted({*repeats, *(index + 1 for index in repeats)})
    pairs = [(names[index], instances[index]) for index in in_groups]
    return len(set(pairs)) == len(pairs)
