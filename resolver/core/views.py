"""Views: what one node (a region) or one laptop (public) should see of the fleet.

A view is the unit the agent compiles and the hosts writer renders, so it holds
exactly the answers to give: per name, the addresses in a stable order and
whether the name also answers under the zone suffix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from itertools import compress, groupby, islice, repeat
from operator import attrgetter, itemgetter, lt
from typing import NamedTuple

from resolver.core.addresses import address_sort_key
from resolver.core.document import HostEntry, MappingDocument
from resolver.core.names import (
    any_shadows_public_name,
    conflict_screen,
    longest_name,
    shadows_public_name,
    zone_conflict,
)
from resolver.errors import ConfigError

PUBLIC = "public"


class CrossRegion(Enum):
    """Which address of an instance in another region a node should use."""

    PUBLIC = "public"
    PRIVATE = "private"


class ViewRecord(NamedTuple):
    """One name of a view and every address it answers with.

    A named tuple for the same reason as ``HostEntry``: one per name, 100,000 per reload.
    """

    name: str
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    qualified: bool
    """True when the name also answers as ``name.<zone>`` (and owns its reverse names)."""


@dataclass(frozen=True, slots=True)
class Omission:
    """An instance left out of a view because it lacks the address the view needs."""

    name: str
    instance_id: str
    reason: str


@dataclass(frozen=True)
class View:
    """An immutable view of one document, ready to compile or render."""

    label: str
    zone: str
    serial: int
    records: tuple[ViewRecord, ...]
    omitted: tuple[Omission, ...] = ()

    def record(self, name: str) -> ViewRecord | None:
        """The record for a bare name (linear: for tools, not the query path)."""
        for record in self.records:
            if record.name == name:
                return record
        return None


def _sorted_unique(addresses: Iterable[str]) -> tuple[str, ...]:
    unique = set(addresses)
    if len(unique) < 2:  # most names have one address: nothing to order
        return tuple(unique)
    return tuple(sorted(unique, key=address_sort_key))


_BY_NAME = itemgetter(0)
_REGION = attrgetter("region")
_PRIVATE_IPV4 = attrgetter("private_ipv4")
_IPV6 = attrgetter("ipv6")


def _usable_groups(
    document: MappingDocument, zone: str, omitted: list[Omission]
) -> Iterator[tuple[str, list[HostEntry]]]:
    """Each name with its hosts, in name order; names the zone cannot serve go to ``omitted``
    (among them a name too long to be qualified: every name answers as ``name.<zone>``
    somewhere, in its own region's view or the public one).

    A document's hosts are already in name order, so sorting is one linear pass
    and grouping needs no dictionary of 100,000 lists.
    """
    screen = conflict_screen(zone)
    longest = longest_name(zone)
    for name, group in groupby(sorted(document.hosts, key=_BY_NAME), key=_BY_NAME):
        hosts = list(group)
        if (
            name.endswith(screen)
            or len(name) > longest
            or ("." in name and shadows_public_name(name))
        ):
            conflict = zone_conflict(name, zone)
            if conflict is not None:
                omitted.extend(Omission(name, h.instance_id, f"name {conflict}") for h in hosts)
                continue
        yield name, hosts


def region_view(
    document: MappingDocument,
    region: str,
    zone: str,
    cross_region: CrossRegion = CrossRegion.PUBLIC,
) -> View:
    """The view of a node in ``region``.

    A name with an instance in the region is local: private IPv4 and IPv6 of the
    local instances only, as ``name`` and ``name.<zone>``. A name found only in
    other regions is remote: ``name`` alone, with the public (or, for peered
    VPCs, private) IPv4 addresses of its instances.
    """
    if region not in document.regions:
        raise ConfigError(
            f"view region {region!r} is not among the document's regions "
            f"({', '.join(document.regions) or 'none'})"
        )
    every_one_local = _every_name_one_local_instance(document, region, zone)
    if every_one_local is not None:
        return View(region, zone, document.serial, every_one_local)
    return _region_view_by_name(document, region, zone, cross_region)


def _region_view_by_name(
    document: MappingDocument, region: str, zone: str, cross_region: CrossRegion
) -> View:
    """``region_view`` in general: name by name, each with all its instances."""
    collisions: list[Omission] = []
    omitted: list[Omission] = []
    records: list[ViewRecord] = []
    for name, hosts in _usable_groups(document, zone, collisions):
        if len(hosts) == 1 and hosts[0].region == region:
            # The common case: one local instance (a parsed document's IPv6 lists are sorted).
            host = hosts[0]
            ipv6 = host.ipv6 if len(host.ipv6) < 2 else _sorted_unique(host.ipv6)
            records.append(ViewRecord(name, (host.private_ipv4,), ipv6, True))
            continue
        local = [h for h in hosts if h.region == region]
        if local:
            records.append(
                ViewRecord(
                    name=name,
                    ipv4=_sorted_unique(h.private_ipv4 for h in local),
                    ipv6=_sorted_unique(a for h in local for a in h.ipv6),
                    qualified=True,
                )
            )
            continue
        if cross_region is CrossRegion.PRIVATE:
            addresses = [h.private_ipv4 for h in hosts]
        else:
            addresses = []
            for host in hosts:
                if host.public_ipv4 is None:
                    omitted.append(Omission(name, host.instance_id, "no public IPv4 address"))
                else:
                    addresses.append(host.public_ipv4)
        if addresses:
            records.append(ViewRecord(name, _sorted_unique(addresses), (), qualified=False))
    return View(region, zone, document.serial, tuple(records), (*collisions, *omitted))


def _every_name_one_local_instance(
    document: MappingDocument, region: str, zone: str
) -> tuple[ViewRecord, ...] | None:
    """The records of ``region_view`` when every name is on one instance, in the region,
    and clear of the zone's conflicts (a node's view of a one-region fleet); else None.

    That case needs no grouping and no per-name choice, so it is built on whole
    columns, a few C calls each, instead of a Python loop over 100,000 hosts. The
    records are the loop's own: a property test holds the two to the same view.
    """
    hosts = document.hosts
    names = list(map(_BY_NAME, hosts))
    if (
        not hosts
        # Strictly increasing: sorted, and no name on two instances.
        or not all(map(lt, names, islice(names, 1, None)))
        or any(map(str.__ne__, map(_REGION, hosts), repeat(region)))
        or any(map(str.endswith, names, repeat(conflict_screen(zone))))
        or max(map(len, names)) > longest_name(zone)
        or any_shadows_public_name(names)
    ):
        return None
    ipv6 = list(map(_IPV6, hosts))
    for index in compress(range(len(ipv6)), map(lt, repeat(1), map(len, ipv6))):
        ipv6[index] = _sorted_unique(ipv6[index])
    # tuple.__new__ directly: ViewRecord._make checks the length in Python, once a record.
    fields = zip(names, zip(map(_PRIVATE_IPV4, hosts)), ipv6, repeat(True))
    return tuple(map(tuple.__new__, repeat(ViewRecord), fields))


def public_view(document: MappingDocument, zone: str) -> View:
    """The laptop view: every name, qualified, with public IPv4 and IPv6 addresses."""
    collisions: list[Omission] = []
    omitted: list[Omission] = []
    records: list[ViewRecord] = []
    for name, hosts in _usable_groups(document, zone, collisions):
        usable: list[HostEntry] = []
        for host in hosts:
            if host.public_ipv4 is None:
                omitted.append(Omission(name, host.instance_id, "no public IPv4 address"))
            else:
                usable.append(host)
        if usable:
            records.append(
                ViewRecord(
                    name=name,
                    ipv4=_sorted_unique(h.public_ipv4 for h in usable if h.public_ipv4),
                    ipv6=_sorted_unique(a for h in usable for a in h.ipv6),
                    qualified=True,
                )
            )
    return View(PUBLIC, zone, document.serial, tuple(records), (*collisions, *omitted))


def build_view(
    document: MappingDocument,
    view: str,
    zone: str,
    cross_region: CrossRegion = CrossRegion.PUBLIC,
) -> View:
    """``view`` is a region name or ``public``."""
    if view == PUBLIC:
        return public_view(document, zone)
    return region_view(document, view, zone, cross_region)
