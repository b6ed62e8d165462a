"""The node's log lines: for people (``text``) or for machines (``json``, one object a line).

Theory of operation. Everything logs through the standard ``logging`` module. What an
operator searches for or alerts on — a view change and its reason, a new view, a stable
checkpoint, a catch-up or state-sync phase, a peer link up or down, the health verdict
changing — is logged with :func:`log_event`, which names the event and attaches its
fields. The text format prints the sentence as before; the JSON format prints::

    {"time": "2025-01-02T03:04:05.678Z", "level": "info", "logger": "quorum.node",
     "node": "node1", "event": "view_change", "message": "view change to 1 ...",
     "view": 1, "reason": "no_progress", ...}

Lines that are not events carry ``"event": null``. Fields never overwrite the fixed keys.

Never: raise from a formatter (a value JSON cannot hold is written as its ``str``), or
print more than one line per record (tracebacks go into the ``exception`` field).
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Final

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIXED_KEYS: Final = frozenset({"time", "level", "logger", "node", "event", "message"})


def log_event(
    logger: logging.Logger,
    event: str,
    message: str,
    /,
    *args: object,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """Log ``message % args`` as the named ``event`` with ``fields`` (JSON-ready values)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, *args, extra={"event": event, "fields": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def __init__(self, node: str | None = None) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        doc: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if self.node is not None:
            doc["node"] = self.node
        doc["event"] = getattr(record, "event", None)
        doc["message"] = record.getMessage()
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in _FIXED_KEYS:
                    doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False, separators=(",", ":"))


def configure_logging(level: str, log_format: str = "text", node: str | None = None) -> None:
    """Send the process's logs to stderr at ``level`` in ``log_format`` (``text``/``json``).

    Like ``logging.basicConfig``: does nothing when the root logger already has handlers
    (a test runner's, or an embedding program's)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        formatter = JsonFormatter(node) if log_format == "json" else logging.Formatter(TEXT_FORMAT)
        handler.setFormatter(formatter)
        root.addHandler(handler)
        root.setLevel(getattr(logging, level.upper()))
    logging.getLogger("hypercorn").setLevel(logging.WARNING)
