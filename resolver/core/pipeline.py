"""Document bytes to a ready-to-serve zone: the agent's whole reload, minus I/O.

CoreDNS's hosts plugin is the model: parse and build outside the serving path,
then swap the whole map; any failure leaves the old map serving.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from operator import attrgetter

from resolver.core.canonical_reader import read_canonical
from resolver.core.delta import KeptEntries, Previous, keep_entries, rebuild_changed
from resolver.core.document import MappingDocument, decode_document, document_from_json
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

    def reply_settings(self) -> ReplySettings:
        return ReplySettings(
            ttl=self.ttl,
            negative_ttl=self.negative_ttl,
            authoritative=self.authoritative,
            recursion_available=self.forwarding,
        )


_NAME = attrgetter("name")


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
    def of(cls, document: MappingDocument, fingerprint: bytes) -> DocumentFacts:
        """``fingerprint``: the ``document_fingerprint`` of the bytes it was read from."""
        # Hosts come in name order, so a name listed for several instances is adjacent.
        names = dict.fromkeys(map(_NAME, document.hosts))
        return cls(
            serial=document.serial,
            generated_at=document.generated_at,
            fingerprint=fingerprint,
            names_text="\n".join(names),
        )

    def names(self) -> frozenset[str]:
        return frozenset(self.names_text.split("\n")) if self.names_text else frozenset()


def document_fingerprint(data: bytes) -> bytes:
    """A digest of a document's bytes (``DocumentFacts.fingerprint``)."""
    return hashlib.blake2b(data, digest_size=16).digest()


def check_guards(current: DocumentFacts | None, new: DocumentFacts, max_shrink: float) -> None:
    """The serial and shrink guards of ``resolver.core.guards``, on the facts of both.

    A document with the very names of the one in force loses none: comparing the
    two sorted texts costs a memory comparison, where the shrink guard's sets of
    100,000 names cost a tenth of a second, on most reloads.
    """
    check_serial(current, new)
    if current is not None and current.names_text != new.names_text:
        check_shrink(current, new, max_shrink)


@dataclass(frozen=True)
class ReuseBasis:
    """What the next load may reuse of this one (see ``resolver.core.delta``)."""

    settings: ZoneSettings
    regions: tuple[str, ...]
    hosts_span: tuple[int, int]
    """Where the host entries lie in the document's bytes (``DecodedDocument.hosts_span``)."""
    shared_reverse: frozenset[bytes]
    entries: KeptEntries | None
    """The host entries (``resolver.core.delta.keep_entries``); None until
    ``with_entries_kept``, and the next load is then a full one."""


@dataclass(frozen=True)
class LoadedZone:
    facts: DocumentFacts
    view: View
    zone: CompiledZone
    reuse: ReuseBasis | None = None
    """Set when the document's entries came as the publisher writes them."""
    rebuilt: int | None = field(default=None, compare=False)
    """How many names were rebuilt when only the changed ones were; None after a full
    load. How the zone was made, not what it is: equal results compare equal."""


def _compiled_image(document: MappingDocument, settings: ZoneSettings) -> tuple[View, ZoneImage]:
    view = build_view(document, settings.view, settings.zone, settings.cross_region)
    return view, compile_image(view, settings.reply_settings())


def compile_document(
    document: MappingDocument, settings: ZoneSettings, data: bytes | None = None
) -> LoadedZone:
    """Build the view and compile it; raises ConfigError if the view's region is absent.

    ``data`` is the bytes the document was parsed from (its canonical bytes if omitted).
    """
    facts = DocumentFacts.of(
        document, document_fingerprint(document.to_bytes() if data is None else data)
    )
    view, image = _compiled_image(document, settings)
    return LoadedZone(facts, view, image.materialize())


def load_document(
    data: bytes,
    settings: ZoneSettings,
    current: DocumentFacts | None = None,
    *,
    force: bool = False,
    keep_records: bool = True,
    previous: LoadedZone | None = None,
    keep_entries_later: bool = False,
) -> LoadedZone:
    """Parse, validate against the document in force, and compile.

    Raises DocumentError (bad bytes or stale serial) or ShrinkError; ``force``
    skips the guards against ``current`` (a first load from the cache has none).
    Without ``keep_records`` the view comes back without its records, and they and
    the document are freed before the zone's dictionary is built (see ``ZoneImage``);
    the result can then be ``previous`` to the next load, which rebuilds only the
    names whose entries changed when it can (see ``resolver.core.delta``).
    The very bytes of ``previous`` come back as ``previous``: they were checked and
    compiled when it was loaded, and an agent starting from its last-known-good
    copy is sent them again by its source.
    With ``keep_entries_later`` the entries the next load compares with are left for
    ``with_entries_kept``: an agent swaps the new zone in first.
    """
    fingerprint = document_fingerprint(data)
    if previous is not None:
        if fingerprint == previous.facts.fingerprint:
            return previous
        loaded = None if keep_records else _rebuilt(data, fingerprint, settings, previous)
        if loaded is not None:
            if not force:
                check_guards(current, loaded.facts, settings.max_shrink)
            return loaded if keep_entries_later else with_entries_kept(loaded, data)
    document, hosts_span = _read(data)
    facts = DocumentFacts.of(document, fingerprint)
    if not force:
        check_guards(current, facts, settings.max_shrink)
    view, image, reuse = _image_and_basis(document, hosts_span, settings, keep_records=keep_records)
    del document
    if not keep_records:
        view = dataclasses.replace(view, records=())
    loaded = LoadedZone(facts, view, image.materialize(), reuse)
    return loaded if keep_entries_later else with_entries_kept(loaded, data)


def with_entries_kept(loaded: LoadedZone, data: bytes) -> LoadedZone:
    """``loaded`` with the entries of ``data``, its document's bytes, kept for the next
    load to compare with (a no-op when there is nothing to keep).

    Keeping 100,000 entries takes about 0.1 s, which need not delay serving.
    """
    basis = loaded.reuse
    if basis is None or basis.entries is not None:
        return loaded
    kept = dataclasses.replace(basis, entries=keep_entries(data, basis.hosts_span))
    return dataclasses.replace(loaded, reuse=kept)


def _rebuilt(
    data: bytes, fingerprint: bytes, settings: ZoneSettings, previous: LoadedZone
) -> LoadedZone | None:
    """``previous`` with only the changed names rebuilt, or None for a full load."""
    basis = previous.reuse
    if basis is None or basis.settings != settings or basis.entries is None:
        return None
    since = Previous(
        previous.zone,
        previous.view.omitted,
        basis.regions,
        basis.entries,
        basis.shared_reverse,
    )
    delta = rebuild_changed(
        since, data, settings.view, settings.cross_region, settings.reply_settings()
    )
    if delta is None:
        return None
    header = delta.header
    facts = DocumentFacts(
        serial=header.serial,
        generated_at=header.generated_at,
        fingerprint=fingerprint,
        names_text=delta.names_text,
    )
    view = View(delta.zone.label, settings.zone, header.serial, (), delta.omitted)
    reuse = ReuseBasis(settings, header.regions, delta.hosts_span, delta.shared_reverse, None)
    return LoadedZone(facts, view, delta.zone, reuse, rebuilt=delta.rebuilt)


def view_of(data: bytes, settings: ZoneSettings) -> View:
    """The view of a document's bytes, without a zone: what the ``[hosts]`` files are
    written from when the document in force has to be written out again."""
    document, _span = _read(data)
    return build_view(document, settings.view, settings.zone, settings.cross_region)


def _read(data: bytes) -> tuple[MappingDocument, tuple[int, int] | None]:
    """The validated document and where its entries lie (``DecodedDocument.hosts_span``).

    The canonical reader takes a document as the publisher writes it at about
    twice the speed; anything else, or anything it does not clear, takes the
    general parse, which gives the same result or words the error.
    """
    canonical = read_canonical(data)
    if canonical is not None:
        return canonical
    decoded = decode_document(data)
    return document_from_json(decoded.raw), decoded.hosts_span


def _image_and_basis(
    document: MappingDocument,
    hosts_span: tuple[int, int] | None,
    settings: ZoneSettings,
    *,
    keep_records: bool,
) -> tuple[View, ZoneImage, ReuseBasis | None]:
    view, image = _compiled_image(document, settings)
    reuse = None
    if hosts_span is not None and not keep_records and not settings.authoritative:
        shared = frozenset(image.shared_reverse)
        reuse = ReuseBasis(settings, document.regions, hosts_span, shared, None)
    return view, image, reuse
