"""Document bytes to a ready-to-serve zone: the agent's whole reload, minus I/O.

CoreDNS's hosts plugin is the model: parse and build outside the serving path,
then swap the whole map; any failure leaves the old map serving.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from resolver.core.document import MappingDocument, parse_document
from resolver.core.guards import check_serial, check_shrink
from resolver.core.views import CrossRegion, View, build_view
from resolver.core.zone import CompiledZone, ReplySettings, ZoneImage, compile_image


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
class DocumentFacts:
    """What an agent keeps of the document in force: enough for the guards and its status.

    Not the document itself: at 100,000 hosts its entries cost tens of megabytes
    (and pin the parser's memory) only to be compared with the next document.
    The names are one newline-joined string, expanded into a set only when a new
    document is checked against them.
    """

    serial: int
    generated_at: str
    fingerprint: bytes
    """A digest of the document's bytes: the same bytes again need no reload."""
    names_text: str

    @classmethod
    def of(cls, document: MappingDocument, data: bytes) -> DocumentFacts:
        # Hosts come in name order, so a name listed for several instances is adjacent.
        names = dict.fromkeys(host.name for host in document.hosts)
        return cls(
            serial=document.serial,
            generated_at=document.generated_at,
            fingerprint=hashlib.blake2b(data, digest_size=16).digest(),
            names_text="\n".join(names),
        )

    def names(self) -> frozenset[str]:
        return frozenset(self.names_text.split("\n")) if self.names_text else frozenset()


@dataclass(frozen=True)
class LoadedZone:
    facts: DocumentFacts
    view: View
    zone: CompiledZone


def _compiled_image(
    document: MappingDocument, settings: ZoneSettings, data: bytes | None
) -> tuple[DocumentFacts, View, ZoneImage]:
    facts = DocumentFacts.of(document, document.to_bytes() if data is None else data)
    view = build_view(document, settings.view, settings.zone, settings.cross_region)
    reply_settings = ReplySettings(
        ttl=settings.ttl,
        negative_ttl=settings.negative_ttl,
        authoritative=settings.authoritative,
        recursion_available=settings.forwarding,
    )
    return facts, view, compile_image(view, reply_settings)


def compile_document(
    document: MappingDocument, settings: ZoneSettings, data: bytes | None = None
) -> LoadedZone:
    """Build the view and compile it; raises ConfigError if the view's region is absent.

    ``data`` is the bytes the document was parsed from (its canonical bytes if omitted).
    """
    facts, view, image = _compiled_image(document, settings, data)
    return LoadedZone(facts, view, image.materialize())


def _checked_image(
    data: bytes, settings: ZoneSettings, current: DocumentFacts | None, force: bool
) -> tuple[DocumentFacts, View, ZoneImage]:
    document = parse_document(data)
    if not force:
        check_serial(current, document)
        check_shrink(current, document, settings.max_shrink)
    return _compiled_image(document, settings, data)


def load_document(
    data: bytes,
    settings: ZoneSettings,
    current: DocumentFacts | None = None,
    *,
    force: bool = False,
    keep_records: bool = True,
) -> LoadedZone:
    """Parse, validate against the document in force, and compile.

    Raises DocumentError (bad bytes or stale serial) or ShrinkError; ``force``
    skips the guards against ``current`` (a first load from the cache has none).
    Without ``keep_records`` the view comes back without its records, and they and
    the document are freed before the zone's dictionary is built (see ``ZoneImage``).
    """
    facts, view, image = _checked_image(data, settings, current, force)
    if not keep_records:
        view = dataclasses.replace(view, records=())
    return LoadedZone(facts, view, image.materialize())
