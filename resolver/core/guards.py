"""Guards a new document must pass before it replaces the one in force.

Both the publisher and the agent apply them: an empty scan caused by a
credentials or region mistake must not wipe every node's names, and a replayed
old object must not roll nodes back.
"""

from __future__ import annotations

from typing import Protocol

from resolver.errors import ShrinkError, StaleSerialError


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


def check_serial(current: Guarded | None, new: Guarded) -> None:
    """Raise StaleSerialError when ``new`` is older than the document in force."""
    if current is not None and new.serial < current.serial:
        raise StaleSerialError(
            f"serial {new.serial} is older than the serial {current.serial} in force"
        )
