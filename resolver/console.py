"""The ``tagdns`` console script: the command line, with Ctrl-C an exit, not a traceback.

Python imports a console script's module before its ``main`` can catch anything,
and the command's modules take a few tenths of a second to load. So this module
loads none of them at import: a Ctrl-C meanwhile (the first moments of
``scripts/run``) ends the command quietly, with the shell's code for SIGINT.
It also holds the agent's reload signals until the agent can take them
(``resolver.adapters.held_signals``).
"""

from __future__ import annotations

SIGINT_EXIT = 130


def main() -> int:
    try:
        from resolver.adapters.held_signals import hold  # noqa: PLC0415 - as early as can be

        hold()
        from resolver.cli import main as run  # noqa: PLC0415 - the point of this module

        return run()
    except KeyboardInterrupt:
        return SIGINT_EXIT
