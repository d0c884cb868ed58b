"""Suite-wide settings and fixtures.

Hypothesis's defaults judge each example against a 200 ms deadline and the
generator against a speed limit; on a shared machine a scheduling stall of a few
hundred milliseconds would fail a correct test. The properties are about
results, so neither applies; benchmarks are where speed is judged.
"""

import logging
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """For tests that install the agent's log handler: the root logger as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
