"""resolver.core must stay pure: no module that does I/O, no builtin open()."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import resolver.core

FORBIDDEN_MODULES = frozenset(
    {
        "socket",
        "asyncio",
        "selectors",
        "ssl",
        "http",
        "urllib",
        "boto3",
        "botocore",
        "watchdog",
        "subprocess",
        "os",
        "pathlib",
        "shutil",
        "tempfile",
        "io",
        "signal",
        "threading",
        "multiprocessing",
        "requests",
        "uvloop",
        "select",
        "fcntl",
        "mmap",
        "ctypes",
        "glob",
        "importlib",
    }
)
# Pure submodules of an otherwise forbidden package: string handling only, no I/O.
ALLOWED_SUBMODULES = ("urllib.parse",)
FORBIDDEN_CALLS = frozenset({"open", "__import__"})

CORE_DIR = Path(resolver.core.__file__).parent
CORE_FILES = sorted(CORE_DIR.rglob("*.py"))


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every forbidden import or call in ``source``, as ``file:line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        line = getattr(node, "lineno", 0)
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [f"{node.module}.{alias.name}" for alias in node.names]
        for module in modules:
            allowed = any(
                module == pure or module.startswith(pure + ".") for pure in ALLOWED_SUBMODULES
            )
            if module.split(".")[0] in FORBIDDEN_MODULES and not allowed:
                found.append(f"{filename}:{line}: imports {module}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            found.append(f"{filename}:{line}: calls {node.func.id}()")
    return found


def test_core_files_are_found() -> None:
    names = {path.name for path in CORE_FILES}
    assert {"names.py", "document.py", "views.py", "fleet.py", "endpoints.py"} <= names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.relative_to(CORE_DIR).as_posix())
def test_core_module_is_pure(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), path.name) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import socket\n", ["m.py:1: imports socket"]),
        ("import json\nimport os.path\n", ["m.py:2: imports os.path"]),
        ("from urllib.request import urlopen\n", ["m.py:1: imports urllib.request.urlopen"]),
        ("from urllib import request\n", ["m.py:1: imports urllib.request"]),
        ("from os import path, sep\n", ["m.py:1: imports os.path", "m.py:1: imports os.sep"]),
        ("from urllib.parse import urlsplit\nimport urllib.parse\n", []),
        ("import json as socket\n", []),
        ("from . import socket\n", []),
        ("x = 1\ndata = open('f').read()\n", ["m.py:2: calls open()"]),
        ("m = __import__('socket')\n", ["m.py:1: calls __import__()"]),
        ("def f() -> None:\n    import subprocess\n", ["m.py:2: imports subprocess"]),
        ("handle.open()\n", []),
        ("import json, re\nfrom dataclasses import dataclass\n", []),
    ],
    ids=[
        "import-socket",
        "dotted-os",
        "from-urllib",
        "from-urllib-import-request",
        "from-os-import",
        "urllib-parse-is-pure",
        "alias-is-not-socket",
        "relative-import",
        "open-call",
        "dunder-import",
        "nested-import",
        "method-open-ok",
        "clean",
    ],
)
def test_checker_catches_violations(source: str, expected: list[str]) -> None:
    assert violations(source, "m.py") == expected
