"""The heap around a reload: the collector paused during it, freed memory given back after.

Parsing a large document allocates far more, for a moment, than the compiled
zone keeps; glibc holds on to the freed pages unless asked. Asking costs a few
milliseconds once per accepted document, and is a no-op elsewhere.

A load also creates a million objects, none of them in a reference cycle, and
keeps a few hundred thousand: the cyclic collector would walk the survivors
again and again while they pile up. Pausing it for the load saves about a
fifth of the load's CPU (``scripts/bench dns``, compile of 100,000 names).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pause_lock = threading.Lock()
_pauses = 0


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block (nesting and threads allowed).

    Reference counting still frees everything acyclic at once; cycles made
    meanwhile wait for the next collection after the block.
    """
    global _pauses  # noqa: PLW0603 - one process-wide switch, guarded by the lock
    with _pause_lock:
        # Off with no pause of ours under way: someone turned it off for good; leave it so.
        ours = _pauses > 0 or gc.isenabled()
        if ours:
            _pauses += 1
            gc.disable()
    if not ours:
        yield
        return
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0:
                gc.enable()


def release_free_memory() -> None:
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return
