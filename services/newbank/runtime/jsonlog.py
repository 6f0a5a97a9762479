"""JSON-lines logging for the runtime's own processes and for uvicorn's lines in the instances' logs.

The keys match ``newbank.observability.JsonFormatter`` (ts, level, service, instance, logger, msg), so
one instance log file is JSON from uvicorn's first line to the service's last.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str | None = None, instance: str | None = None) -> None:
        super().__init__()
        self.service = service or os.environ.get("NEWBANK_SERVICE", "runtime")
        self.instance = instance or os.environ.get("NEWBANK_INSTANCE_ID", str(os.getpid()))

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "instance": self.instance,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


UVICORN_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "newbank.runtime.jsonlog.JsonFormatter"}},
    "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
    },
}


def uvicorn_log_config(folder: Path) -> Path:
    """Write uvicorn's ``--log-config`` file into ``folder`` (idempotent) and return its path."""
    path = folder / "uvicorn-logging.json"
    text = json.dumps(UVICORN_LOG_CONFIG, indent=1)
    if not path.exists() or path.read_text() != text:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path
