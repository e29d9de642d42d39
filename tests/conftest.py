"""Settings for every test."""

from __future__ import annotations

import structlog

# structlog's default console renderer draws tracebacks with rich when rich is installed
# (mcs status depends on it); that takes long enough to upset timing-sensitive tests.
# Plain tracebacks, as ``mcs run --log-format console`` prints them.
_processors = list(structlog.get_config()["processors"])
_processors[-1] = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
structlog.configure(processors=_processors)
