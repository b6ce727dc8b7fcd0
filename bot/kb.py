"""Knowledge-base entries and their JSONL/CSV import and export, validated on the way in.
A `KnowledgeBase` is immutable: updates return a new one that the hub swaps in."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

CATEGORIES: tuple[str, ...] = (
    "account",
    "trading",
    "fees",
    "margin",
    "wealth",
    "risk_assessment",
    "password_app",
    "transfer",
    "ipo",
    "complaints",
    "general",
)
RISK_LEVELS: tuple[str, ...] = ("R1", "R2", "R3", "R4", "R5")
CSV_FIELDS: tuple[str, ...] = (
    "id",
    "question",
    "answer",
    "similar_questions",
    "category",
    "risk_level",
    "enabled",
)
# Separator for similar questions inside one CSV cell.
CSV_SIMILAR_SEPARATOR = "|"
_KNOWN_KEYS = frozenset(CSV_FIELDS)
_MAX_ID_LEN = 64
_MAX_QUESTION_LEN = 500
_MAX_ANSWER_LEN = 5000


class KBFormatError(ValueError):
    """A knowledge-base file or entry is malformed; `line` is 1-based (0 when unknown)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class KBEntry:
    """One question the bot can answer, with the wordings investors use for it."""

    id: str
    question: str
    answer: str
    similar_questions: tuple[str, ...] = ()
    category: str = "general"
    risk_level: str | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        _check_entry(self, line=0)

    @property
    def all_questions(self) -> tuple[str, ...]:
        """The standard question followed by its similar questions."""
        return (self.question, *self.similar_questions)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], line: int = 0) -> KBEntry:
        """Validate one decoded JSON object (or CSV row) and build the entry."""
        if not isinstance(data, Mapping):
            raise KBFormatError(line, "entry must be a JSON object")
        unknown = sorted(set(data) - _KNOWN_KEYS)
        if unknown:
            raise KBFormatError(line, f"unknown field(s): {', '.join(unknown)}")
        for key in ("id", "question", "answer"):
            if key not in data or data[key] is None:
                raise KBFormatError(line, f"missing required field '{key}'")
            if not isinstance(data[key], str):
                raise KBFormatError(line, f"field '{key}' must be a string")
        similar = data.get("similar_questions") or []
        if isinstance(similar, str) or not isinstance(similar, list | tuple):
            raise KBFormatError(line, "field 'similar_questions' must be a list of strings")
        if not all(isinstance(s, str) for s in similar):
            raise KBFormatError(line, "field 'similar_questions' must be a list of strings")
        category = data.get("category")
        if category is None or category == "":
            category = "general"
        if not isinstance(category, str):
            raise KBFormatError(line, "field 'category' must be a string")
        risk = data.get("risk_level")
        if risk == "":
            risk = None
        if risk is not None and not isinstance(risk, str):
            raise KBFormatError(line, "field 'risk_level' must be a string or null")
        enabled = data.get("enabled", True)
        if enabled is None:
            enabled = True
        if not isinstance(enabled, bool):
            raise KBFormatError(line, "field 'enabled' must be true or false")
        try:
            return cls(
                id=data["id"].strip(),
                question=data["question"].strip(),
                answer=data["answer"].strip(),
                similar_questions=tuple(s.strip() for s in similar if s.strip()),
                category=category.strip(),
                risk_level=risk.strip().upper() if risk else None,
                enabled=enabled,
            )
        except KBFormatError as exc:
            raise KBFormatError(line, exc.reason) from None

    def to_dict(self) -> dict[str, Any]:
        """The JSONL representation (all fields, in a stable order)."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "similar_questions": list(self.similar_questions),
            "category": self.category,
            "risk_level": self.risk_level,
            "enabled": self.enabled,
        }


def _check_entry(entry: KBEntry, line: int) -> None:
    if not entry.id or len(entry.id) > _MAX_ID_LEN or any(c.isspace() for c in entry.id):
        raise KBFormatError(line, f"id must be 1-{_MAX_ID_LEN} characters without spaces")
    if not entry.question or len(entry.question) > _MAX_QUESTION_LEN:
        raise KBFormatError(line, f"question must be 1-{_MAX_QUESTION_LEN} characters")
    if not entry.answer or len(entry.answer) > _MAX_ANSWER_LEN:
        raise KBFormatError(line, f"answer must be 1-{_MAX_ANSWER_LEN} characters")
    if any(not s or len(s) > _MAX_QUESTION_LEN for s in entry.similar_questions):
        raise KBFormatError(line, f"similar questions must be 1-{_MAX_QUESTION_LEN} characters")
    if entry.category not in CATEGORIES:
        raise KBFormatError(
            line, f"unknown category '{entry.category}' (expected one of {', '.join(CATEGORIES)})"
        )
    if entry.risk_level is not None and entry.risk_level not in RISK_LEVELS:
        raise KBFormatError(
            line, f"risk_level must be one of R1-R5 or empty, not '{entry.risk_level}'"
        )


class KnowledgeBase:
    """An immutable, ordered set of entries with unique ids."""

    __slots__ = ("_entries", "_by_id")

    def __init__(self, entries: Iterable[KBEntry] = ()) -> None:
        ordered = tuple(entries)
        by_id: dict[str, KBEntry] = {}
        for entry in ordered:
            if entry.id in by_id:
                raise KBFormatError(0, f"duplicate id '{entry.id}'")
            by_id[entry.id] = entry
        self._entries = ordered
        self._by_id = by_id

    @property
    def entries(self) -> tuple[KBEntry, ...]:
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, entry_id: str) -> KBEntry | None:
        return self._by_id.get(entry_id)

    def with_entry(self, entry: KBEntry) -> KnowledgeBase:
        """A new KB with `entry` added, or replacing the entry with the same id in place."""
        if entry.id in self._by_id:
            return KnowledgeBase(entry if e.id == entry.id else e for e in self._entries)
        return KnowledgeBase((*self._entries, entry))

    def without(self, entry_id: str) -> KnowledgeBase:
        """A new KB without the entry; unchanged content if the id is unknown."""
        return KnowledgeBase(e for e in self._entries if e.id != entry_id)

    @classmethod
    def from_jsonl(cls, text: str) -> KnowledgeBase:
        """Parse one JSON object per line; blank lines are skipped."""
        entries: list[KBEntry] = []
        seen: dict[str, int] = {}
        for number, data in read_jsonl(text):
            entry = KBEntry.from_dict(data, line=number)
            _remember_id(seen, entry.id, number)
            entries.append(entry)
        return cls(entries)

    @classmethod
    def from_csv(cls, text: str) -> KnowledgeBase:
        """Parse UTF-8 CSV with a header row; similar questions are separated by '|'."""
        text = text.removeprefix("\ufeff")
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise KBFormatError(1, f"invalid CSV: {exc}") from None
        if header is None:
            raise KBFormatError(1, "empty file: expected a header row")
        columns = [h.strip() for h in header]
        unknown = [c for c in columns if c not in _KNOWN_KEYS]
        if unknown:
            raise KBFormatError(1, f"unknown column(s): {', '.join(unknown)}")
        missing = [c for c in ("id", "question", "answer") if c not in columns]
        if missing:
            raise KBFormatError(1, f"missing column(s): {', '.join(missing)}")
        if len(set(columns)) != len(columns):
            raise KBFormatError(1, "duplicate column names")
        entries: list[KBEntry] = []
        seen: dict[str, int] = {}
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise KBFormatError(reader.line_num, f"invalid CSV: {exc}") from None
            # line_num counts physical lines, so quoted multi-line answers report their last line.
            number = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise KBFormatError(number, f"expected {len(columns)} columns, found {len(row)}")
            cells = dict(zip(columns, row, strict=True))
            data: dict[str, Any] = {"id": cells["id"], "question": cells["question"]}
            data["answer"] = cells["answer"]
            similar = cells.get("similar_questions", "")
            data["similar_questions"] = [s for s in similar.split(CSV_SIMILAR_SEPARATOR)]
            data["category"] = cells.get("category", "") or "general"
            data["risk_level"] = cells.get("risk_level", "") or None
            data["enabled"] = _parse_bool(cells.get("enabled", ""), number)
            entry = KBEntry.from_dict(data, line=number)
            _remember_id(seen, entry.id, number)
            entries.append(entry)
        return cls(entries)

    def to_jsonl(self) -> str:
        return "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in self._entries)

    def to_csv(self) -> str:
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for e in self._entries:
            if any(CSV_SIMILAR_SEPARATOR in s for s in e.similar_questions):
                raise KBFormatError(0, f"entry '{e.id}': a similar question contains '|'")
            writer.writerow(
                (
                    e.id,
                    e.question,
                    e.answer,
                    CSV_SIMILAR_SEPARATOR.join(e.similar_questions),
                    e.category,
                    e.risk_level or "",
                    "true" if e.enabled else "false",
                )
            )
        return out.getvalue()


def read_jsonl(text: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line; KBFormatError names a bad line."""
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as exc:
            raise KBFormatError(number, f"invalid JSON: {exc.msg}") from None


def _remember_id(seen: dict[str, int], entry_id: str, line: int) -> None:
    if entry_id in seen:
        raise KBFormatError(line, f"duplicate id '{entry_id}' (first on line {seen[entry_id]})")
    seen[entry_id] = line


def _parse_bool(cell: str, line: int) -> bool:
    value = cell.strip().lower()
    if value in ("", "true", "1", "yes", "y", "是"):
        return True
    if value in ("false", "0", "no", "n", "否"):
        return False
    raise KBFormatError(line, f"field 'enabled' must be true or false, not '{cell}'")


def load_demo_kb() -> KnowledgeBase:
    """The shipped Chinese demo knowledge base (`bot/data/demo_kb.jsonl`)."""
    text = resources.files("bot").joinpath("data/demo_kb.jsonl").read_text(encoding="utf-8")
    return KnowledgeBase.from_jsonl(text)
