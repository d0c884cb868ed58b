"""The one error hierarchy of tagdns.

Every failure a user can cause or meet is one of these, so the CLI can turn it
into a single line and an exit code instead of a traceback. The message of each
error names the file, field or value at fault.
"""

from __future__ import annotations


class TagdnsError(Exception):
    """Root of every error tagdns reports to a user."""

    exit_code = 1


class UsageError(TagdnsError):
    """The command line or the configuration is wrong: the user must fix it."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration file or a flag holds a value tagdns cannot use."""


class InvalidName(TagdnsError):
    """A name from a tag or a document is not a safe hostname."""


class DocumentError(TagdnsError):
    """A mapping document is malformed or fails validation."""


class ShrinkError(TagdnsError):
    """A new document would drop more names than the shrink guard allows."""


class DroppedRegionError(ShrinkError):
    """A new document would drop a region the one in force has: agents there would refuse it."""


class StaleSerialError(DocumentError):
    """A document is older than the one already in force."""


class AwsError(TagdnsError):
    """An AWS call failed (credentials, permissions, endpoint, throttling)."""


class SourceError(TagdnsError):
    """The mapping source could not be read."""


class HostsFileError(TagdnsError):
    """A hosts file could not be read, merged or written."""
