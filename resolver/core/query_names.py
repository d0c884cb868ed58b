"""A name as a user types it, made into the labels a DNS client would send.

``tagdns lookup`` answers for the query the agent would actually receive, so it
turns the name into wire labels as a DNS client does (IDNA for non-ASCII labels),
and a name that cannot travel in a query is a usage error naming what is wrong,
not a traceback from an encoder.
"""

from __future__ import annotations

import ipaddress
from encodings import idna

from resolver.core.names import MAX_LABEL_OCTETS, MAX_NAME_OCTETS
from resolver.errors import UsageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def lookup_address(raw: str) -> IPAddress | None:
    """The address whose PTR ``lookup`` asks for, None when ``raw`` is a name.

    Forms an address takes elsewhere but that name no PTR are usage errors naming the
    value: an IPv6 zone index (``fe80::1%eth0``: the reverse name is of the address
    alone, and ``ipaddress`` would raise from ``reverse_pointer``) and a network
    (``10.0.0.0/24``, which would otherwise be asked as a name with a slash in it).
    """

    def bad(problem: str) -> UsageError:
        return UsageError(f"lookup: {raw!r} is not a DNS name: {problem}")

    address, percent, zone = raw.partition("%")
    if percent:
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return None
        raise bad(f"an address with a zone index (%{zone}) has no PTR name; leave out %{zone}")
    try:
        return ipaddress.ip_address(raw)
    except ValueError:
        pass
    if "/" in raw:
        try:
            ipaddress.ip_network(raw, strict=False)
        except ValueError:
            return None
        raise bad("it is a network, not an address; give one address for its PTR")
    return None


def lookup_labels(raw: str) -> tuple[bytes, ...]:
    """The wire labels a DNS client would send for ``raw``; UsageError naming what is wrong.

    lookup answers for the query the agent would actually receive, so it converts the
    name as a DNS client does: a non-ASCII label becomes its IDNA (punycode) form, with
    the IDNA 2003 mapping dnslib applies, and a name that cannot travel in a query at
    all (an empty label, a label over 63 octets, over 253 octets in all) is a usage
    error rather than a traceback from the encoder. Anything else a query can carry is
    kept, letter case included (the agent matches names case-insensitively); a trailing
    dot only marks the name as fully qualified. The root, ``.``, is no labels.
    """

    def bad(problem: str) -> UsageError:
        return UsageError(f"lookup: {raw!r} is not a DNS name: {problem}")

    if raw == "":
        raise bad("it is empty")
    parts = idna.dots.split(raw)
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # the trailing dot of a fully qualified name
        if parts == [""]:
            return ()  # the root
    labels: list[bytes] = []
    for part in parts:
        what = "it" if len(parts) == 1 else f"label {part!r}"  # the value is named once
        if part == "":
            raise bad("it has an empty label (a leading dot, or two dots in a row)")
        if part.isascii():
            label = part.encode("ascii")
        else:
            try:
                label = idna.ToASCII(part)
            except UnicodeError as exc:
                raise bad(_idna_problem(part, what, exc)) from None
        if len(label) > MAX_LABEL_OCTETS:
            raise bad(f"{what} is {len(label)} octets, more than {MAX_LABEL_OCTETS} for a label")
        labels.append(label)
    length = len(b".".join(labels))
    if length > MAX_NAME_OCTETS:
        converted = "" if all(part.isascii() for part in parts) else " in IDNA form"
        raise bad(f"it is {length} octets{converted}, more than {MAX_NAME_OCTETS}")
    return tuple(labels)


def _idna_problem(label: str, what: str, exc: UnicodeError) -> str:
    """Why a non-ASCII label has no IDNA form: the codec says only "empty or too long"."""
    try:
        prepared = idna.nameprep(label)
    except UnicodeError as prep_error:
        return f"{what} has no IDNA form: {prep_error}"
    if not prepared:
        return f"{what} is empty once IDNA maps it"
    length = len(prepared) if prepared.isascii() else len(b"xn--" + prepared.encode("punycode"))
    if length > MAX_LABEL_OCTETS:
        return f"{what} is {length} octets in IDNA form, more than {MAX_LABEL_OCTETS} for a label"
    return f"{what} has no IDNA form: {exc}"
