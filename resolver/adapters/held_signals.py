"""Reload and logging signals held from the first moments of ``tagdns serve``.

SIGHUP (fetch now) and SIGUSR1 (toggle query logging) end a process by default.
The agent takes them over only once its modules are loaded and its event loop
runs, a few tenths of a second after exec, and a reload sent in that window (a
deploy script, a config-management run racing a restart) killed it. So the
console script blocks both before it loads anything, and the agent unblocks
them once its handlers are in: a signal sent meanwhile stays pending and is
handled then. Every other command unblocks them as soon as its arguments are
parsed, so a hang-up still ends ``tagdns publish`` in a closed terminal.
"""

from __future__ import annotations

import signal

HELD = frozenset({signal.SIGHUP, signal.SIGUSR1})


def hold() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD)


def release() -> None:
    """Unblock ``HELD`` in the calling thread; any of them pending is delivered now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)
