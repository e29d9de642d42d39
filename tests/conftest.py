"""Settings for every test."""

from __future__ import annotations

import structlog
from hypothesis import settings

# structlog's default console renderer draws tracebacks with rich when rich is installed
# (mcs status depends on it); that takes long enough to upset timing-sensitive tests.
# Plain tracebacks, as ``mcs run --log-format console`` prints them.
_processors = list(structlog.get_config()["processors"])
_processors[-1] = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
structlog.configure(processors=_processors)

# Hypothesis's per-example deadline (200 ms) is a timed assertion on a shared, noisy
# machine: test_endpoints' properties missed it while CI ran beside them. Examples are
# still bounded by each test's own settings (max_examples); time is measured in bench/.
settings.register_profile("mcs", deadline=None)
settings.load_profile("mcs")
