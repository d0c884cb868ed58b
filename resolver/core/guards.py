"""Guards a new document must pass before it replaces the one in force.

Both the publisher and the agent apply them: an empty scan caused by a
credentials or region mistake must not wipe every node's names, and a replayed
old object must not roll nodes back. The region guard is the publisher's alone:
an agent whose region is dropped refuses the document without it.
"""

from __future__ import annotations

from typing import Protocol

from resolver.core.document import MappingDocument
from resolver.errors import DroppedRegionError, ShrinkError, StaleSerialError


class Guarded(Protocol):
    """A document, or what an agent keeps of the one in force."""

    @property
    def serial(self) -> int: ...

    def names(self) -> frozenset[str]: ...


def lost_share(old: Guarded, new: Guarded) -> float:
    """Share of the old document's names that the new one no longer has."""
    old_names = old.names()
    if not old_names:
        return 0.0
    return len(old_names - new.names()) / len(old_names)


def check_shrink(old: Guarded | None, new: Guarded, max_shrink: float) -> None:
    """Raise ShrinkError when ``new`` loses more than ``max_shrink`` of the names."""
    if old is None:
        return
    old_names = old.names()
    if not old_names:
        return
    lost = len(old_names - new.names())
    share = lost / len(old_names)
    if share > max_shrink:
        raise ShrinkError(
            f"new document loses {lost} of {len(old_names)} names ({share:.0%}), "
            f"more than the {max_shrink:.0%} allowed"
        )


def dropped_regions(old: MappingDocument | None, new: MappingDocument) -> tuple[str, ...]:
    """Regions ``old`` lists that ``new`` does not, sorted."""
    if old is None:
        return ()
    return tuple(sorted(set(old.regions) - set(new.regions)))


def check_regions(old: MappingDocument | None, new: MappingDocument) -> None:
    """Raise DroppedRegionError when ``new`` leaves out a region ``old`` has.

    The shrink guard counts names, so a narrowed ``--regions`` (or a region gone
    from DescribeRegions) can pass it; yet every agent in a dropped region refuses
    the document outright, since its view region is not among the document's.
    """
    dropped = dropped_regions(old, new)
    if dropped:
        noun = "region" if len(dropped) == 1 else "regions"
        raise DroppedRegionError(
            f"new document drops {noun} {', '.join(dropped)}, which the current document has: "
            "agents there would refuse it"
        )


def check_serial(current: Guarded | None, new: Guarded) -> None:
    """Raise StaleSerialError when ``new`` is older than the document in force."""
    if current is not None and new.serial < current.serial:
        raise StaleSerialError(
            f"serial {new.serial} is older than the serial {current.serial} in force"
        )
