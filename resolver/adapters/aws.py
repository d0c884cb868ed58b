"""Shared boto3 plumbing: one session, one client configuration, one way to word failures.

boto3's own configuration applies unchanged (credential chain, ``AWS_PROFILE``,
``AWS_ENDPOINT_URL``, ``AWS_MAX_ATTEMPTS``); this module only picks the retry
mode and timeouts a command-line tool wants, and turns botocore's exceptions
into the single line a user reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import botocore.config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from resolver.errors import AwsError

# Everything botocore raises for a failed call. ResponseParserError (an unreadable
# reply, e.g. an HTML error page from a proxy) is not a BotoCoreError.
AWS_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError, ResponseParserError)

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_s3 import S3Client

FALLBACK_REGION = "us-east-1"

# "standard" retries throttling and transient errors with jittered backoff. No
# max_attempts here, so AWS_MAX_ATTEMPTS and the config file still decide it.
CLIENT_CONFIG = botocore.config.Config(
    retries={"mode": "standard"},
    connect_timeout=5,
    read_timeout=60,
    max_pool_connections=16,
)


def make_session() -> boto3.Session:
    """A session from the normal credential chain; a bad AWS_PROFILE is one line, not a trace."""
    try:
        return boto3.Session()
    except ProfileNotFound as exc:
        raise AwsError(f"AWS profile not found: {exc.kwargs.get('profile', exc)}") from None
    except BotoCoreError as exc:
        raise AwsError(f"AWS configuration: {exc}") from None


def home_region(session: boto3.Session, fallback: str = FALLBACK_REGION) -> str:
    """The session's region, for calls that are not about one region in particular."""
    return session.region_name or fallback


def ec2_client(session: boto3.Session, region: str) -> EC2Client:
    try:
        return session.client("ec2", region_name=region, config=CLIENT_CONFIG)
    except BotoCoreError as exc:
        raise AwsError(f"EC2 client for {region}: {describe_error(exc)}") from None


def s3_client(session: boto3.Session) -> S3Client:
    try:
        return session.client("s3", config=CLIENT_CONFIG)
    except BotoCoreError as exc:
        raise AwsError(f"S3 client: {describe_error(exc)}") from None


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe_error(exc: Exception) -> str:
    """One line for a botocore failure: what went wrong, never a traceback."""
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (environment, AWS_PROFILE, config files or role)"
    if isinstance(exc, PartialCredentialsError):
        return f"incomplete AWS credentials: {exc}"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot connect to {exc.kwargs.get('endpoint_url', 'the AWS endpoint')}"
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        return f"timed out talking to {exc.kwargs.get('endpoint_url', 'the AWS endpoint')}"
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
