"""Two revisions of the agent side by side: owned-name queries per CPU-second.

Run with ``scripts/bench compare REV`` (against the working tree) or
``scripts/bench compare REV1 REV2``. On a shared, noisy machine a hot-path change
of a few per cent is lost between two runs of ``scripts/bench dns``: here both
agents serve the same fleet at once and take turns under the same dnsperf load,
the order alternating each round, so drift falls on both alike. The figure is the
queries answered per second of the agent's own CPU (utime + stime), which depends
far less on what else runs than queries per second do. It prints; it writes
nothing into the docs.

An older revision runs from a ``git worktree`` of it in a temporary directory,
with this checkout's virtualenv (so its dependencies must not have changed).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchmarks.dns import (
    ROOT,
    Server,
    add_load_arguments,
    agent_server,
    dnsperf,
    median,
    perf_settings,
    running,
    write_inputs,
)

PYTHON = ROOT / ".venv" / "bin" / "python"
WORKING_TREE = "."
"""The revision name of this checkout as it is on disk."""


@contextlib.contextmanager
def checkout(revision: str, scratch: Path) -> Iterator[Path]:
    """A tree of ``revision`` (this checkout itself for ``.``), removed afterwards."""
    if revision == WORKING_TREE:
        yield ROOT
        return
    tree = scratch / f"tree-{len(list(scratch.iterdir()))}"
    git = ["git", "-C", str(ROOT)]
    subprocess.run([*git, "worktree", "add", "--detach", "-q", str(tree), revision], check=True)
    try:
        yield tree
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=False)


def agent_from(tree: Path, label: str, document: Path, work: Path) -> Server:
    """``benchmarks.dns``'s agent, run from ``tree``'s ``resolver`` package."""
    server = agent_server(label, document, work)
    script = "import sys; from resolver.console import main; sys.exit(main())"
    server.argv = ["env", f"PYTHONPATH={tree}", str(PYTHON), "-c", script, *server.argv[1:]]
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("base", help="a git revision")
    parser.add_argument("other", nargs="?", default=WORKING_TREE, help="default: this tree")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per revision")
    parser.add_argument("--seconds", type=int, default=6, help="dnsperf -l per round")
    parser.add_argument("--names", type=int, default=1000)
    add_load_arguments(parser)
    args = parser.parse_args(argv)
    if args.base == args.other:
        parser.error("two different revisions, please")
    rates: dict[str, list[float]] = {args.base: [], args.other: []}
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tagdns-compare-")))
        scratch = work / "trees"
        scratch.mkdir()
        inputs = write_inputs(args.names, 50_000, work)
        servers = [
            agent_from(stack.enter_context(checkout(rev, scratch)), rev, inputs.document, work)
            for rev in rates
        ]
        perf = [*perf_settings(args), "-l", str(args.seconds)]

        def one_round(server: Server) -> None:
            before = sum(server.cpu_seconds())
            result = dnsperf(server.port, inputs.queries, perf)
            rates[server.label].append(result.completed / (sum(server.cpu_seconds()) - before))

        with running(servers):
            for server in servers:
                server.wait_ready(inputs.view.records[0].name)
            for round_no in range(args.rounds):  # A B, then B A, ...
                for server in servers[:: 1 if round_no % 2 == 0 else -1]:
                    print(f"  round {round_no + 1}: {server.label}", file=sys.stderr, flush=True)
                    one_round(server)
    base, other = (median(rates[rev]) for rev in rates)
    for rev, values in rates.items():
        shown = " / ".join(f"{v:,.0f}" for v in values)
        print(f"{rev}: {median(values):,.0f} queries per CPU-second (median of {shown})")
    print(f"{args.other} / {args.base}: {other / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
