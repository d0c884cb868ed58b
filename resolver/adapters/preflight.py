"""The probing behind ``tagdns check``: bind attempts, /proc, files on disk.

Decisions and wording live in resolver.core.preflight; this module only asks
the system. Nothing here changes the system: a probe socket is closed at once,
and the write tests of the cache and ``[hosts]`` directories remove their
temporary files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from resolver.adapters.dnsmasq import process_exists, process_name, read_pid
from resolver.adapters.listen_sockets import listening_socket
from resolver.core import wire
from resolver.core.endpoints import Endpoint
from resolver.core.preflight import (
    ROOT_NS_QUESTION,
    Holder,
    ProcSocket,
    UpstreamProbe,
    blocking_inodes,
    parse_cmdline,
    parse_proc_net,
)
from resolver.core.upstream_reply import UpstreamAnswer, parse_reply, query_message

PROC = Path("/proc")
RESOLVED_CONF = Path("/etc/systemd/resolved.conf")
RESOLVED_DROP_IN_DIRS = (
    Path("/etc/systemd/resolved.conf.d"),
    Path("/run/systemd/resolved.conf.d"),
    Path("/usr/local/lib/systemd/resolved.conf.d"),
    Path("/usr/lib/systemd/resolved.conf.d"),
)


def ask_upstream(upstream: Endpoint, timeout: float = 2.0) -> UpstreamProbe:
    """One recursive question (the root's NS) to ``upstream`` over UDP, from a
    connected socket with a random ID, as the agent would ask it: again without EDNS
    when it answers FORMERR without an OPT (RFC 6891 section 7), as the agent does."""
    started = time.monotonic()
    try:
        family, _type, _proto, _name, address = socket.getaddrinfo(
            upstream.host, upstream.port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
        )[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            for edns in (True, False):
                answer = _exchange(sock, edns, started + timeout)
                if answer is None:
                    break
                if answer.rcode != wire.FORMERR or answer.edns or not edns:
                    return UpstreamProbe(
                        answer.rcode,
                        time.monotonic() - started,
                        extended_error=answer.extended_error,
                    )
    except OSError as exc:  # ICMP port unreachable: nothing answers DNS there
        return UpstreamProbe(None, time.monotonic() - started, exc.strerror or str(exc))
    return UpstreamProbe(None, timeout, f"no answer in {timeout:g} s")


def _exchange(sock: socket.socket, edns: bool, deadline: float) -> UpstreamAnswer | None:
    """Our question on ``sock``, and the reply that answers it; None by ``deadline``."""
    qid = secrets.token_bytes(2)
    sock.send(query_message(qid, ROOT_NS_QUESTION, do=False, cd=False, edns=edns))
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            answer = parse_reply(sock.recv(65535), qid, ROOT_NS_QUESTION)
        except TimeoutError:
            return None
        if answer is not None:
            return answer
    return None


def try_bind(endpoint: Endpoint) -> dict[str, tuple[int, str] | None]:
    """Bind UDP and TCP on ``endpoint`` as the agent would; errno and text per protocol."""
    results: dict[str, tuple[int, str] | None] = {}
    for name, kind in (("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM)):
        try:
            with listening_socket(endpoint, kind) as sock:
                if kind == socket.SOCK_STREAM:
                    sock.listen(1)
            results[name] = None
        except OSError as exc:
            results[name] = (exc.errno or 0, exc.strerror or str(exc))
    return results


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def proc_sockets(*, tcp: bool, proc: Path = PROC) -> list[ProcSocket]:
    base = "tcp" if tcp else "udp"
    byteorder: Literal["little", "big"] = "little" if sys.byteorder == "little" else "big"
    sockets: list[ProcSocket] = []
    for name in (base, base + "6"):
        sockets.extend(parse_proc_net(_read(proc / "net" / name), byteorder))
    return sockets


def socket_owners(inodes: Sequence[int], proc: Path = PROC) -> list[Holder]:
    """The processes with one of ``inodes`` open (readable only for our own, unless root)."""
    if not inodes:
        return []
    targets = {f"socket:[{inode}]" for inode in inodes}
    holders: list[Holder] = []
    try:
        entries = list(proc.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                link = os.readlink(descriptor)
            except OSError:
                continue
            if link in targets:
                comm = _read(entry / "comm").strip() or "?"
                try:
                    cmdline = parse_cmdline((entry / "cmdline").read_bytes())
                except OSError:
                    cmdline = ()
                holders.append(Holder(int(entry.name), comm, cmdline))
                break
    return sorted(holders, key=lambda h: h.pid)


def port_holders(endpoint: Endpoint, *, protocols: Sequence[str] = ("udp", "tcp")) -> list[Holder]:
    """Who holds ``endpoint`` (for the protocols given), as far as /proc tells."""
    inodes: list[int] = []
    for protocol in protocols:
        tcp = protocol == "tcp"
        inodes.extend(blocking_inodes(proc_sockets(tcp=tcp), endpoint, tcp=tcp))
    return socket_owners(inodes)


def read_resolved_configs() -> list[str]:
    """resolved.conf, then its drop-ins by file name (a name in /etc hides the same in /usr)."""
    texts = [_read(RESOLVED_CONF)]
    chosen: dict[str, Path] = {}
    for directory in RESOLVED_DROP_IN_DIRS:
        with contextlib.suppress(OSError):
            for path in directory.glob("*.conf"):
                chosen.setdefault(path.name, path)
    texts.extend(_read(chosen[name]) for name in sorted(chosen))
    return [text for text in texts if text]


def directory_problem(path: Path) -> str | None:
    """Why the agent could not write ``path`` (atomically: temp file, rename); None if it can."""
    if path.is_dir():
        return (
            f"{path} is a directory; name the file to keep the copy in, as {path / 'mapping.json'}"
        )
    directory = path.parent
    existing = directory
    while not existing.exists():
        if existing.parent == existing:
            return f"no existing directory above {directory}"
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if existing != directory:
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"{directory} does not exist and {existing} is not writable to create it"
        return None
    try:
        handle, name = tempfile.mkstemp(dir=directory, prefix=".tagdns-check-")
    except OSError as exc:
        return f"{directory} is not writable: {exc.strerror or exc}"
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)


def hosts_file_problem(path: Path) -> str | None:
    """Why the ``[hosts]`` writer could not keep ``path``; None when it can.

    The probes follow resolver.adapters.hosts_file.update_file step by step, so that
    ``check`` fails on exactly what would make every write of ``serve`` fail: the
    directory (of the link's target) must exist, since the writer locks it and creates
    nothing above the file; an existing file must be a readable regular file; and the
    new content must get in, by a temp file and rename or, on a read-only directory
    holding a separately mounted file, in place. Unlike ``cache_path`` a missing
    directory is not created, so it is a failure even under a writable parent.
    """
    target = Path(os.path.realpath(path))
    directory = target.parent
    try:
        os.close(os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except FileNotFoundError:
        return f"directory {directory} does not exist"
    except NotADirectoryError:
        return f"{directory} is not a directory"
    except OSError as exc:
        return f"cannot open directory {directory}: {_reason(exc)}"
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        return f"cannot read: {_reason(exc)}"
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            return "is a directory"
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        try:
            os.close(os.open(target, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            return f"cannot read: {_reason(exc)}"
        if not os.access(target, os.W_OK):
            return "not writable: permission denied"
    try:
        handle, name = tempfile.mkstemp(dir=directory, prefix=".tagdns-check-")
    except OSError as exc:
        if exc.errno == errno.EROFS and info is not None and os.access(target, os.W_OK):
            return None  # a file mounted on its own: the writer rewrites it in place
        return f"cannot write: directory {directory} is not writable: {_reason(exc)}"
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def dnsmasq_process(pidfile: Path) -> tuple[int | None, str | None, bool]:
    """The pid in dnsmasq's pidfile, that process's name, and whether it is alive.

    The name is None with no pidfile, no process, or a process /proc hides
    (hidepid); ``alive`` tells the last two apart. Read with the feeder's own
    functions, so a pidfile the feeder would refuse raises the same HostsFileError here.
    """
    pid = read_pid(pidfile)
    if pid is None:
        return None, None, False
    name = process_name(pid)
    return pid, name, name is not None or process_exists(pid)
