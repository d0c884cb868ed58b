"""Reading a mapping document from a local file, with one-line errors."""

from __future__ import annotations

from pathlib import Path

from resolver.errors import SourceError

MAX_DOCUMENT_BYTES = 256 * 1024 * 1024


def read_document_file(path: str) -> bytes:
    """The file's bytes; a SourceError naming the path for anything unreadable."""
    target = Path(path)
    try:
        with target.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a directory") from None
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise SourceError(f"{path}: larger than {MAX_DOCUMENT_BYTES} bytes")
    return data
