"""Structured logging: one JSON object a line, with personal numbers masked before they leave.

ID-card, bank-card and phone numbers never reach a log file in full (docs/security.md).
"""

from __future__ import annotations

import logging
import re
import sys
import time

import orjson

_LONG_NUMBER = re.compile(r"(?<!\d)(\d{3})\d{4,12}(\d{3}[\dXx])(?!\d)")
_TOKEN = re.compile(r"(eyJ[\w-]{8,})\.[\w-]+\.[\w-]+")
# People write phones and cards in groups: 138 1234 5678, 138-1234-5678, 6222 0212 3456 7890.
_GROUPED_NUMBER = re.compile(r"(?<!\d)\d(?:[ -]?\d){10,22}(?!\d)")


def _mask_grouped(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    keep = set(digits[:3] + digits[-4:])
    return "".join(c if not c.isdigit() or i in keep else "*" for i, c in enumerate(text))


# The hub's ids (conversation, message, user): 16+ hex characters with at least one letter. About
# one in ten holds a run of 11+ decimal digits, which the number masks used to star out, so an
# operator could not find that conversation in the logs. No phone, bank-card or ID-card number is
# written with the letters a-f inside it (an ID card's check character is X).
HEX_ID = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{16,}(?![0-9A-Za-z])")


def _mask_numbers(text: str) -> str:
    text = _LONG_NUMBER.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - 7) + m.group(2), text)
    return _GROUPED_NUMBER.sub(_mask_grouped, text)


def mask(text: str) -> str:
    """Mask runs of 11+ digits (phones, bank cards, ID cards), grouped or not, outside the
    hub's hex ids, and JWTs."""
    text = _TOKEN.sub("<token>", text)
    parts: list[str] = []
    last = 0
    for found in HEX_ID.finditer(text):
        parts.append(_mask_numbers(text[last : found.start()]))
        parts.append(found.group(0))
        last = found.end()
    parts.append(_mask_numbers(text[last:]))
    return "".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = mask(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


def configure(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        formatter = MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        formatter.converter = time.localtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("jieba").setLevel(logging.WARNING)
