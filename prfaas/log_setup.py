"""One logging setup for every prfaas process: `--log-level` and `--log-format text|json`.

Each process's entry point adds the two options (`add_logging_arguments`) and calls
`configure_logging(args)` first thing; `prfaas up` passes its own values to every child, so one
flag sets the whole deployment. JSON lines carry the request id where a log record names one: an
explicit `extra={"request_id": ...}`, or an id the HTTP front end minted ("cmpl-<hex>",
"chatcmpl-<hex>", with any attempt suffix) found in the message.
"""

from __future__ import annotations

import argparse
import json
import logging
import re

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_REQUEST_ID = re.compile(r"\b((?:chatcmpl|cmpl)-[0-9a-f]{8,}(?:-[\w.]+)?)")


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="INFO", help="DEBUG | INFO | WARNING | ERROR")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="json: one JSON object per line (time, level, logger, message, request_id)",
    )


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record; `request_id` when the record names one."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            found = _REQUEST_ID.search(message)
            request_id = found.group(1) if found else None
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(args: argparse.Namespace) -> None:
    """Root logging from the process's options (a second call replaces the first)."""
    handler = logging.StreamHandler()
    json_lines = getattr(args, "log_format", "text") == "json"
    handler.setFormatter(JsonLogFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(
        level=str(getattr(args, "log_level", "INFO")).upper(), handlers=[handler], force=True
    )
