"""Reading a mapping document from a local file, with one-line errors.

The path is whatever the operator (or whoever can write there) put in place, so it
is opened without blocking and must be a regular file: a FIFO would hold the fetch,
and with it every later reload, until someone wrote to it, and ``/dev/zero`` never
ends. The size is judged from ``fstat`` before anything is read, so a file over the
limit costs no memory, poll after poll.
"""

from __future__ import annotations

import os
import stat

from resolver.errors import SourceError

MAX_DOCUMENT_BYTES = 256 * 1024 * 1024


def read_document_file(path: str, *, pipes: bool = False) -> bytes:
    """The file's bytes; a SourceError naming the path for anything unreadable.

    ``pipes`` also reads a FIFO to its end (``--source /dev/stdin`` or ``<(...)``), for
    a command that reads its source once; the agent, which polls, never does.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied") from None
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise SourceError(f"{path}: is a directory")
        fifo = pipes and stat.S_ISFIFO(info.st_mode)
        if fifo:
            os.set_blocking(fd, True)  # its writer may not have written yet
        elif not stat.S_ISREG(info.st_mode):
            raise SourceError(f"{path}: not a regular file")
        if info.st_size > MAX_DOCUMENT_BYTES:
            raise SourceError(f"{path}: larger than {MAX_DOCUMENT_BYTES} bytes")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)  # it may have grown since fstat
        if len(data) > MAX_DOCUMENT_BYTES:
            del data  # not kept alive by the traceback's frame
            raise SourceError(f"{path}: larger than {MAX_DOCUMENT_BYTES} bytes")
        if fifo and not data:
            raise SourceError(f"{path}: empty: nothing was written to the pipe when it was read")
        return data
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
