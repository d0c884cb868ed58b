"""What one document publishes: the S3 objects, their bytes, and the order they go out in.

Kept pure so the key layout, the rendering of each view and the write order are
tested without S3. The mapping document comes last: agents poll it, so when it
changes every hosts file it describes is already in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from resolver.core.document import MappingDocument
from resolver.core.hosts_text import render_hosts
from resolver.core.views import PUBLIC, CrossRegion, Omission, build_view

MAPPING_NAME = "mapping.json"
JSON_TYPE = "application/json"
HOSTS_TYPE = "text/plain"


@dataclass(frozen=True)
class PublishedObject:
    """One object to put under the prefix, with the content type S3 should serve."""

    key: str
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Publication:
    """Every object for one document (mapping last) and who each view left out."""

    objects: tuple[PublishedObject, ...]
    omitted: tuple[tuple[str, tuple[Omission, ...]], ...]

    @property
    def mapping(self) -> PublishedObject:
        return self.objects[-1]

    @property
    def hosts_files(self) -> tuple[PublishedObject, ...]:
        return self.objects[:-1]


def object_key(prefix: str, name: str) -> str:
    """``dns`` + ``mapping.json`` -> ``dns/mapping.json``; an empty prefix means the bucket root."""
    stripped = prefix.strip("/")
    return f"{stripped}/{name}" if stripped else name


def mapping_key(prefix: str) -> str:
    return object_key(prefix, MAPPING_NAME)


def hosts_key(prefix: str, view: str) -> str:
    return object_key(prefix, f"hosts/{view}.hosts")


def build_publication(document: MappingDocument, prefix: str, zone: str) -> Publication:
    """Hosts text for each scanned region (remote names by public address) and the public view.

    Per-region files use ``cross_region = public``: a reader of a static file
    cannot know whether its VPCs are peered, and public addresses work either way.
    """
    objects: list[PublishedObject] = []
    omitted: list[tuple[str, tuple[Omission, ...]]] = []
    for label in (*document.regions, PUBLIC):
        view = build_view(document, label, zone, CrossRegion.PUBLIC)
        text = render_hosts(view)
        objects.append(PublishedObject(hosts_key(prefix, label), text.encode("ascii"), HOSTS_TYPE))
        if view.omitted:
            omitted.append((label, view.omitted))
    objects.append(PublishedObject(mapping_key(prefix), document.to_bytes(), JSON_TYPE))
    return Publication(tuple(objects), tuple(omitted))
