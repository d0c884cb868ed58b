"""Giving freed heap memory back to the operating system after a reload.

Parsing a large document allocates far more, for a moment, than the compiled
zone keeps; glibc holds on to the freed pages unless asked. Asking costs a few
milliseconds once per accepted document, and is a no-op elsewhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


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
