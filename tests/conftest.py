"""Suite-wide settings.

Hypothesis's defaults judge each example against a 200 ms deadline and the
generator against a speed limit; on a shared machine a scheduling stall of a few
hundred milliseconds would fail a correct test. The properties are about
results, so neither applies; benchmarks are where speed is judged.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")
