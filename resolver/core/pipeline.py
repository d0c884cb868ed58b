"""Document bytes to a ready-to-serve zone: the agent's whole reload, minus I/O.

CoreDNS's hosts plugin is the model: parse and build outside the serving path,
then swap the whole map; any failure leaves the old map serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from resolver.core.document import MappingDocument, parse_document
from resolver.core.guards import check_serial, check_shrink
from resolver.core.views import CrossRegion, View, build_view
from resolver.core.zone import CompiledZone, compile_zone


@dataclass(frozen=True)
class ZoneSettings:
    """Everything besides the document that decides what the agent answers."""

    view: str
    zone: str = "internal"
    cross_region: CrossRegion = CrossRegion.PUBLIC
    ttl: int = 30
    negative_ttl: int = 30
    authoritative: bool = False
    forwarding: bool = False
    max_shrink: float = 0.5


@dataclass(frozen=True)
class LoadedZone:
    document: MappingDocument
    view: View
    zone: CompiledZone


def compile_document(document: MappingDocument, settings: ZoneSettings) -> LoadedZone:
    """Build the view and compile it; raises ConfigError if the view's region is absent."""
    view = build_view(document, settings.view, settings.zone, settings.cross_region)
    zone = compile_zone(
        view,
        ttl=settings.ttl,
        negative_ttl=settings.negative_ttl,
        authoritative=settings.authoritative,
        recursion_available=settings.forwarding,
    )
    return LoadedZone(document, view, zone)


def load_document(
    data: bytes,
    settings: ZoneSettings,
    current: MappingDocument | None = None,
    *,
    force: bool = False,
) -> LoadedZone:
    """Parse, validate against the document in force, and compile.

    Raises DocumentError (bad bytes or stale serial) or ShrinkError; ``force``
    skips the guards against ``current`` (a first load from the cache has none).
    """
    document = parse_document(data)
    if not force:
        check_serial(current, document)
        check_shrink(current, document, settings.max_shrink)
    return compile_document(document, settings)
