"""How a log line is written for a log shipper: ``MEMORY_LOG_FORMAT=json`` (``beecatalog/settings.py``
puts :class:`JsonFormatter` on LOGGING's handlers, ``beecatalog/celery.py`` on the worker's).

One JSON object per line: ``timestamp`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``,
``message`` (the same pt-BR message the text format prints), every field a call passed in
``extra=`` under its own name, and ``exception`` (the traceback) when there is one.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

# What every record carries: anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None))) | {
    "message", "asctime",
}


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON (the module's docstring lists the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                line.setdefault(name, value)  # the four above are never replaced
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # Non-ASCII as it is (the messages are pt-BR); a value JSON has no form for, as its str().
        return json.dumps(line, ensure_ascii=False, default=str)
