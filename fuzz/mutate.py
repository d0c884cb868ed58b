"""Mutations: generic byte havoc plus format-aware moves for DNS, JSON and hosts text.

The format-aware mutators reach what random bytes rarely do (a second OPT, a
pointer loop in the additional section, a host entry whose name is
``s3.amazonaws.com``, a damaged marker line) and serve two drivers: atheris's
custom mutator (mixed with libFuzzer's own) and the pure-Python fallback engine.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Sequence
from typing import Any

# -- dictionaries ----------------------------------------------------------------------------

DNS_TOKENS: tuple[bytes, ...] = (
    b"\xc0\x0c",
    b"\xc0\x00",
    b"\xc0\x0e",
    b"\xff\xff",
    b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00",  # OPT, payload 4096
    b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00",  # OPT, DO
    b"\x00\x00\x29\x02\x00\x00\x01\x00\x00\x00\x00",  # OPT, version 1
    b"\x00\x0a\x00\x08",  # COOKIE option header
    b"\x00\x08\x00\x07\x00\x01\x18\x00",  # ECS option header, /24
    b"\x00\x0c\x00\x00",  # PADDING, empty
    b"\x04web1\x00",
    b"\x08internal\x00",
    b"\x04web1\x08internal\x00",
    b"\x07in-addr\x04arpa\x00",
    b"\x03ip6\x04arpa\x00",
    b"\x00\x01\x00\x01",
    b"\x00\x1c\x00\x01",
    b"\x00\x0c\x00\x01",
    b"\x00\xff\x00\x01",
    b"\x00\x41\x00\x01",
    b"\x00\x06\x00\x01",
    b"\x00\x01\x00\xff",
    b"\x3f" + b"a" * 63,
)

DOCUMENT_TOKENS: tuple[bytes, ...] = tuple(
    token.encode()
    for token in (
        '"schema":1',
        '"serial":',
        '"generated_at":"2025-11-25T13:20:00Z"',
        '"tag_key":"dns"',
        '"regions":["us-east-1","eu-west-1"]',
        '"hosts":[]',
        '"rejected":[]',
        '"name":"web1"',
        '"region":"us-east-1"',
        '"instance_id":"i-00000000000000001"',
        '"az":"us-east-1a"',
        '"private_ipv4":"10.0.1.10"',
        '"public_ipv4":null',
        '"ipv6":["2600:1f18:1::10"]',
        '"value":"web$(reboot)"',
        '"reason":"x"',
        "\\u0000",
        "\\ud800",
        "1e400",
        "-0",
        "[[[[[[[[",
    )
)
RELOAD_TOKENS: tuple[bytes, ...] = (
    *DOCUMENT_TOKENS,
    b"},{",
    b'}],"regions":[',
    b'"name":"web"',
    b'"private_ipv4":"10.0.0.1"',
    b"\\u0061",
)
"""What could mislead a rebuild's cut of the entries, besides the document's own tokens."""

HOSTS_TOKENS: tuple[bytes, ...] = (
    b"# BEGIN tagdns\n",
    b"# END tagdns\n",
    b"# BEGIN tagdns\r\n",
    b"  # END tagdns  \n",
    b"#BEGIN TAGDNS\n",
    b"# begin  tagdns\n",
    b"## END tagdns\n",
    b"127.0.0.1 localhost\n",
    b"10.0.1.10 web1.internal web1\n",
    b"\r\n",
    b"\n",
    b"\x00",
    b"\xff\xfe",
    b"\xe9",
)

_INTERESTING_BYTES = (0, 1, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF)


# -- generic havoc ---------------------------------------------------------------------------


def havoc(
    data: bytes,
    rng: random.Random,
    *,
    tokens: Sequence[bytes] = (),
    corpus: Sequence[bytes] = (),
    max_len: int = 4096,
) -> bytes:
    """One to four random byte-level edits."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(9)
        at = rng.randint(0, len(out))
        if choice == 0 and out:
            out[at % len(out)] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:
            out[at % len(out)] = rng.choice(_INTERESTING_BYTES)
        elif choice == 2 and out:
            out[at % len(out)] = rng.randrange(256)
        elif choice == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        elif choice == 4 and out:
            del out[at : at + rng.randint(1, 16)]
        elif choice == 5 and out:
            start = rng.randrange(len(out))
            chunk = out[start : start + rng.randint(1, 32)]
            out[at:at] = chunk
        elif choice == 6 and tokens:
            out[at:at] = rng.choice(tokens)
        elif choice == 7 and corpus:
            other = rng.choice(corpus)
            cut = rng.randint(0, len(other))
            out = out[:at] + bytearray(other[cut:])
        elif choice == 8:
            del out[at:]
    return bytes(out[:max_len])


# -- DNS ---------------------------------------------------------------------------------------


def _question_end(data: bytes | bytearray) -> int | None:
    position = 12
    while position < len(data) and data[position]:
        if data[position] > 63:
            return None
        position += data[position] + 1
    return position + 5 if position + 5 <= len(data) else None


def _option(rng: random.Random) -> bytes:
    code = rng.choice([3, 8, 10, 11, 12, 15, 65001, rng.randrange(65536)])
    if code == 8:  # ECS: family, source and scope prefix, address
        family = rng.choice([1, 2, 0, 3])
        prefix = rng.choice([0, 24, 32, 33, 56, 128, 255])
        value = struct.pack("!HBB", family, prefix, 0) + rng.randbytes(rng.randint(0, 17))
    elif code == 10:  # COOKIE: 8 client octets, maybe a server cookie
        value = rng.randbytes(rng.choice([8, 16, 24, 40, 7, 0]))
    elif code == 12:
        value = bytes(rng.choice([0, 1, 100, 400]))
    else:
        value = rng.randbytes(rng.randint(0, 12))
    length = len(value) if rng.random() < 0.85 else rng.randrange(65536)
    return struct.pack("!HH", code, length) + value


def _opt_record(rng: random.Random) -> bytes:
    options = b"".join(_option(rng) for _ in range(rng.randint(0, 3)))
    owner = b"\x00" if rng.random() < 0.9 else rng.choice([b"\xc0\x0c", b"\x01a\x00"])
    payload = rng.choice([0, 511, 512, 1232, 4096, 65535])
    version = rng.choice([0, 0, 0, 1, 255])
    flags = rng.choice([0, 0x8000, 0xFFFF])
    return owner + struct.pack("!HHBBHH", 41, payload, 0, version, flags, len(options)) + options


def _bump(out: bytearray, offset: int, delta: int) -> None:
    if len(out) >= offset + 2:
        value = (out[offset] << 8 | out[offset + 1]) + delta
        out[offset : offset + 2] = struct.pack("!H", value & 0xFFFF)


def dns_message(data: bytes, rng: random.Random) -> bytes:
    """A DNS-aware edit: counts, flags, pointers, OPT records and options, odd names."""
    out = bytearray(data)
    if len(out) < 12:
        out += bytes(12 - len(out))
    choice = rng.randrange(10)
    qend = _question_end(out)
    if choice == 0:  # a count field
        offset = rng.choice([4, 6, 8, 10])
        out[offset : offset + 2] = struct.pack("!H", rng.choice([0, 1, 2, 3, 0xFFFF]))
    elif choice == 1:  # header flags: opcode, QR, TC, RD, CD, AD, Z
        out[2] ^= rng.choice([0x80, 0x78, 0x08, 0x02, 0x01, 0x04])
        out[3] ^= rng.choice([0x10, 0x20, 0x40, 0x0F])
    elif choice == 2:  # a pointer somewhere: backwards, to itself, forwards, to the header
        at = rng.randint(12, len(out))
        target = rng.choice([0, 2, 12, 13, at, at + 2, rng.randrange(0x4000)])
        out[at:at] = struct.pack("!H", 0xC000 | (target & 0x3FFF)) * rng.choice([1, 1, 2, 50])
    elif choice == 3:  # append an OPT (a second one, maybe)
        out += _opt_record(rng)
        _bump(out, 10, 1)
    elif choice == 4 and qend is not None:  # replace the trailing records with a fresh OPT
        del out[qend:]
        out += _opt_record(rng)
        out[10:12] = b"\x00\x01"
    elif choice == 5:  # append a resource record with an odd owner
        owner = rng.choice(
            [b"\x00", b"\xc0\x0c", b"\xc0\x0e", b"\x01x\x00", b"\xc0" + bytes([len(out) & 0xFF])]
        )
        rtype = rng.choice([1, 5, 6, 12, 15, 28, 41, 250, 65280])
        rdata = rng.randbytes(rng.choice([0, 4, 16, 22]))
        rdlength = len(rdata) if rng.random() < 0.8 else rng.randrange(65536)
        ttl = rng.choice([0, 60, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
        out += owner + struct.pack("!HHIH", rtype, 1, ttl, rdlength) + rdata
        _bump(out, rng.choice([6, 8, 10]), 1)
    elif choice == 6 and qend is not None:  # the question name: long, mixed case, odd labels
        name = rng.choice(
            [
                b"\x3f" + b"a" * 63 + b"\x00",
                b"\x40" + b"a" * 64 + b"\x00",
                (b"\x3f" + b"b" * 63) * 4 + b"\x00",
                (b"\x01a") * 127 + b"\x00",
                b"\x04WeB1\x08InTeRnAl\x00",
                b"\x00",
                b"\x01\x00\x00",
                b"\x01.\x00",
            ]
        )
        out[12 : qend - 4] = name
    elif choice == 7 and qend is not None:  # the question type and class
        out[qend - 4 : qend] = struct.pack(
            "!HH",
            rng.choice([1, 2, 6, 12, 28, 41, 65, 97, 255, 0, 0xFFFF]),
            rng.choice([1, 3, 254, 255, 0]),
        )
    elif choice == 8 and qend is not None:  # a second copy of the question
        out[qend:qend] = out[12:qend]
        _bump(out, 4, 1)
    else:  # cut anywhere
        del out[rng.randint(0, len(out)) :]
    return bytes(out)


# -- JSON documents ----------------------------------------------------------------------------

_HOSTILE_NAMES = (
    "web1",
    "WEB1",
    " web1 ",
    "web$(reboot)",
    "web1\n10.6.6.6 evil",
    "a" * 63,
    "a" * 64,
    ".".join(["a" * 63] * 4),
    "-x",
    "x-",
    "a..b",
    "",
    "localhost",
    "web1.internal",
    "s3.amazonaws.com",
    "ip-10-0-0-1.ec2.internal",
    "x.compute.internal",
    "1.0.0.10.in-addr.arpa",
    "xn--bcher-kva",
    "bücher",
    "*",
    "# END tagdns",
    "\u0000",
)
_HOSTILE_ADDRESSES = (
    "10.0.1.10",
    "010.0.1.10",
    "10.0.1.256",
    "10.0.1",
    " 10.0.1.10",
    "0.0.0.0",  # noqa: S104 - a value in a hostile document, not an address to bind
    "127.0.0.1",
    "255.255.255.255",
    "::1",
    "::ffff:10.0.0.1",
    "2600:1f18:1::10",
    "2600:1F18:1:0:0:0:0:10",
    "fe80::1%eth0",
    "2600:1f18::/64",
    "1.2.3.4\n5.6.7.8 evil",
)
_HOSTILE_SCALARS: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**32,
    2**63,
    2**64,
    10**30,
    1.5,
    1e308,
    "",
    "1",
    [],
    {},
    "us-east-1",
    "US-EAST-1",
    "us-east-1a",
    "us-west-2-lax-1a",
    "cn-north-1",
    "i-0123456789abcdef0",
    "i-" + "f" * 18,
    "2025-11-25T13:20:00Z",
    "2025-11-25T13:20:00+01:00",
    "2025-13-45T25:61:61Z",
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:8]):
            found += _paths(child, (*prefix, index))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def _hostile_value(rng: random.Random, key: Any) -> Any:
    if key in ("name", "value"):
        return rng.choice(_HOSTILE_NAMES)
    if key in ("private_ipv4", "public_ipv4"):
        return rng.choice(_HOSTILE_ADDRESSES)
    if key == "ipv6":
        return [rng.choice(_HOSTILE_ADDRESSES) for _ in range(rng.randint(0, 3))]
    return rng.choice(_HOSTILE_SCALARS)


def json_document(data: bytes, rng: random.Random) -> bytes:
    """A structural edit of a JSON document; bytes it cannot read get byte havoc."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return havoc(data, rng, tokens=DOCUMENT_TOKENS)
    paths = _paths(document)
    path = rng.choice(paths)
    choice = rng.randrange(7)
    if not path:
        choice = rng.choice([5, 6])
    if choice in (0, 1, 2) and path:  # replace a value
        parent = _get(document, path[:-1])
        parent[path[-1]] = _hostile_value(rng, path[-1])
    elif choice == 3 and path:  # delete a key or an item
        parent = _get(document, path[:-1])
        del parent[path[-1]]
    elif choice == 4 and path:  # duplicate an item / add an unknown key
        parent = _get(document, path[:-1])
        if isinstance(parent, list):
            parent.insert(path[-1], json.loads(json.dumps(parent[path[-1]])))
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "Name", "name ", "hosts"])] = rng.choice(_HOSTILE_SCALARS)
    elif choice == 5 and isinstance(document, dict):  # a host with hostile fields
        hosts = document.get("hosts")
        if isinstance(hosts, list):
            hosts.append(
                {
                    "name": rng.choice(_HOSTILE_NAMES),
                    "region": rng.choice(["us-east-1", "eu-west-1", "xx-east-1"]),
                    "instance_id": f"i-{rng.randrange(16**17):017x}",
                    "az": "us-east-1a",
                    "private_ipv4": rng.choice(_HOSTILE_ADDRESSES),
                    "public_ipv4": rng.choice([None, *_HOSTILE_ADDRESSES]),
                    "ipv6": [],
                }
            )
    else:  # nesting
        document = [document] if rng.random() < 0.5 else {"hosts": document}
    text = json.dumps(
        document,
        sort_keys=rng.random() < 0.5,
        ensure_ascii=rng.random() < 0.5,
        separators=rng.choice([(",", ":"), (", ", ": ")]),
    )
    return text.encode("utf-8", errors="surrogatepass")


# -- hosts text --------------------------------------------------------------------------------


def hosts_text(data: bytes, rng: random.Random) -> bytes:
    """A line-level edit of a hosts file (byte 0, the view selector, is kept)."""
    head, body = data[:1], data[1:]
    lines = body.split(b"\n")
    choice = rng.randrange(5)
    at = rng.randint(0, len(lines))
    if choice == 0:
        lines.insert(at, rng.choice(HOSTS_TOKENS).rstrip(b"\n"))
    elif choice == 1 and lines:
        del lines[at % len(lines)]
    elif choice == 2 and lines:
        lines.insert(at, lines[rng.randrange(len(lines))])
    elif choice == 3 and lines:
        index = at % len(lines)
        lines[index] = lines[index] + rng.choice([b"\r", b" ", b"\t", b"\x00", b"\xe9"])
    else:
        return head + havoc(body, rng, tokens=HOSTS_TOKENS)
    return head + b"\n".join(lines)
