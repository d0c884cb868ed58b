"""Shared boto3 plumbing: one session, one client configuration, one way to word failures.

boto3's own configuration applies unchanged (credential chain, ``AWS_PROFILE``,
``AWS_ENDPOINT_URL``, ``AWS_MAX_ATTEMPTS``); this module only picks the retry
mode and timeouts a command-line tool wants, and turns botocore's exceptions
into the single line a user reads.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

import boto3
import botocore.config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigParseError,
    ConnectTimeoutError,
    EndpointConnectionError,
    InvalidConfigError,
    InvalidEndpointConfigurationError,
    InvalidRegionError,
    InvalidRetryConfigurationError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    ValidationError,
)
from botocore.parsers import ResponseParserError
from botocore.utils import (
    is_valid_endpoint_url,
    is_valid_ipv6_endpoint_url,
    validate_region_name,
)

from resolver.errors import AwsError, ConfigError, TagdnsError

# Everything botocore raises for a failed call. ResponseParserError (an unreadable
# reply, e.g. an HTML error page from a proxy) is not a BotoCoreError.
AWS_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError, ResponseParserError)

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_s3 import S3Client

FALLBACK_REGION = "us-east-1"


EC2_READ_TIMEOUT = 60
"""Seconds without a byte before an EC2 call is retried: a page of 1,000
instances can take DescribeInstances several seconds to assemble."""
S3_READ_TIMEOUT = 10
"""The same for S3. A read timeout bounds the wait for each chunk, not the whole
body, and S3 sends its first byte in well under a second, so a 15 MB document
still arrives; an endpoint that accepts and never answers fails in about 30 s
(three attempts) rather than three minutes: ``tagdns check`` and ``lookup`` stop
there, and the agent's next fetch is not held behind it."""


def client_config(read_timeout: float = EC2_READ_TIMEOUT) -> botocore.config.Config:
    """A new client configuration for each client.

    "standard" retries throttling and transient errors with jittered backoff. No
    max_attempts here, so AWS_MAX_ATTEMPTS and the config file still decide it.
    New each time because botocore writes the attempts it resolved into the
    ``retries`` dict it is given: a shared one would fix the first client's
    AWS_MAX_ATTEMPTS for every later client in the process.
    """
    return botocore.config.Config(
        retries={"mode": "standard"},
        connect_timeout=5,
        read_timeout=read_timeout,
        max_pool_connections=16,
    )


# What botocore raises while building a client from a setting it cannot use: a
# malformed endpoint URL or attempt count is a bare ValueError, the rest its own
# classes. No request has been made yet, so these are always the user's
# configuration, never AWS failing.
_SETTING_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    ValidationError,
    InvalidRetryConfigurationError,
    InvalidConfigError,
    InvalidEndpointConfigurationError,
    ConfigParseError,
    ProfileNotFound,
)


def make_session() -> boto3.Session:
    """A session from the normal credential chain; a bad AWS_PROFILE is one line, not a trace."""
    try:
        return boto3.Session()
    except ProfileNotFound as exc:
        raise ConfigError(_profile_not_found(exc)) from None
    except ConfigParseError as exc:
        raise ConfigError(f"AWS configuration: {one_line(str(exc))}") from None
    except BotoCoreError as exc:
        raise AwsError(f"AWS configuration: {exc}") from None


def home_region(session: boto3.Session, fallback: str = FALLBACK_REGION) -> str:
    """The session's region, for calls that are not about one region in particular."""
    return session.region_name or fallback


def ec2_client(session: boto3.Session, region: str) -> EC2Client:
    try:
        return session.client("ec2", region_name=region, config=client_config())
    except (BotoCoreError, ValueError) as exc:
        raise client_error(f"EC2 client for {region}", "ec2", exc) from None


def s3_client(session: boto3.Session) -> S3Client:
    try:
        return session.client("s3", config=client_config(S3_READ_TIMEOUT))
    except (BotoCoreError, ValueError) as exc:
        raise client_error("S3 client", "s3", exc) from None


def client_error(what: str, service: str, exc: Exception) -> TagdnsError:
    """The one line for a client that could not be built.

    botocore reads AWS_ENDPOINT_URL, AWS_MAX_ATTEMPTS and friends only here, and
    reports a bad value as a bare ValueError that names neither the variable nor
    the command; the user needs to know which setting to fix. A setting error is
    a configuration error (exit 2); anything else (credential providers run here
    too) stays an AWS failure.
    """
    if isinstance(exc, _SETTING_ERRORS):
        fault = environment_fault(os.environ, service)
        if fault is not None:
            return ConfigError(fault)
        if isinstance(exc, ProfileNotFound):
            return ConfigError(_profile_not_found(exc))
        return ConfigError(
            f"AWS configuration for the {what}: {one_line(str(exc))} "
            "(check the AWS_* environment variables and the AWS config file)"
        )
    return AwsError(f"{what}: {describe_error(exc)}")


def environment_fault(environ: Mapping[str, str], service: str) -> str | None:
    """The first AWS_* variable botocore would reject for ``service``, as one line, or None.

    Only the variables a user typically sets by hand are checked; the rules are
    botocore's own (an empty endpoint variable counts as unset, as it does there).
    """
    if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() != "true":
        for name in (f"AWS_ENDPOINT_URL_{service.upper()}", "AWS_ENDPOINT_URL"):
            value = environ.get(name, "")
            if not value:
                continue
            if not (is_valid_endpoint_url(value) or is_valid_ipv6_endpoint_url(value)):
                return (
                    f"{name}: {value!r} is not an endpoint URL "
                    "(expected e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:5000)"
                )
            break  # the service's own variable wins over the general one
    attempts = environ.get("AWS_MAX_ATTEMPTS")
    if attempts is not None:
        try:
            valid = int(attempts) >= 1
        except ValueError:
            valid = False
        if not valid:
            return f"AWS_MAX_ATTEMPTS: {attempts!r} is not a whole number of at least 1"
    region = environ.get("AWS_DEFAULT_REGION")
    if region:
        try:
            validate_region_name(region)
        except InvalidRegionError:
            return f"AWS_DEFAULT_REGION: {region!r} is not a region name"
    return None


def _profile_not_found(exc: ProfileNotFound) -> str:
    """Name the variable that asked for the missing profile, so the user knows what to unset."""
    profile = str(exc.kwargs.get("profile", ""))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        if os.environ.get(name) == profile:
            return f"{name}: profile {profile!r} is not in the AWS config files"
    return f"AWS profile {profile!r} is not in the AWS config files"


def _endpoint(exc: BotoCoreError) -> str:
    """The endpoint an error names, credentials in it masked as botocore masks a
    proxy's; botocore leaves it None for a timeout while reading a reply's body."""
    url = exc.kwargs.get("endpoint_url")
    if not url:
        return "the AWS endpoint"
    parts = urllib.parse.urlsplit(str(url))
    if "@" not in parts.netloc:
        return str(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***:***@{host}"))


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe_error(exc: Exception) -> str:
    """One line for a botocore failure: what went wrong, never a traceback."""
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (environment, AWS_PROFILE, config files or role)"
    if isinstance(exc, PartialCredentialsError):
        return f"incomplete AWS credentials: {exc}"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot connect to {_endpoint(exc)}"
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return f"timed out talking to {_endpoint(exc)}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "error"
        message = error.get("Message") or exc.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode", ""
        )
        return one_line(f"{code}: {message}" if message else str(code))
    return one_line(str(exc) or type(exc).__name__)


def one_line(text: str) -> str:
    """Collapse a message to one line: servers and parsers quote bodies with newlines."""
    flat = " ".join(text.split())
    return flat if len(flat) <= 300 else flat[:297] + "..."
