"""The daemon's logs: readable lines for a terminal, or one JSON object per line for collectors.

``--log-json`` (or ``log_json = true`` in coordinator.toml) switches to JSON so a log shipper
(journald, Loki, CloudWatch, ...) can index fields without parsing text. uvicorn's own loggers
are routed through the same root handler (the daemon gives uvicorn no logging config of its
own), so its access lines become JSON too, with method, path, status and client as fields.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_HANDLER_NAME = "retail-coordinator"
# Chatty libraries: their INFO lines are about their internals, not the coordinator.
_QUIET = ("httpx", "httpcore", "alembic", "sqlalchemy.engine", "multipart")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    then any ``extra=`` fields, uvicorn access fields, and ``exc`` with the traceback text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            # uvicorn's access line arguments: client, method, path, http version, status
            client, method, path, version, status = args
            entry.update(client=client, method=method, path=path, http=version, status=status)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(
    *, json_logs: bool = False, level: int = logging.INFO, stream: TextIO | None = None
) -> logging.Handler:
    """Install one handler on the root logger (replacing an earlier one of ours, so calling it
    twice is harmless) and route uvicorn's loggers through it. Returns the handler."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(_TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    return handler
