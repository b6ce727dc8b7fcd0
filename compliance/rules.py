"""Compliance rules: the validated rule model, rule sets and their JSONL form.

A rule says what to look for (literal terms, a proximity pair or a regex) and what it means.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

CATEGORIES: tuple[str, ...] = (
    "promise_returns",
    "principal_guarantee",
    "inducing_trades",
    "insider_info",
    "private_fees",
    "off_channel",
    "exaggerated_performance",
    "suitability",
    "personal_data",
    "abuse",
)

ROLES: tuple[str, ...] = ("advisor", "investor", "bot")
VALIDATORS: tuple[str, ...] = ("luhn", "id_card", "mobile")


class Tier(enum.IntEnum):
    """How serious a hit is; ordered so ``max()`` over hits gives the verdict."""

    PASS = 0
    INFO = 1
    WARN = 2
    BLOCK = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Tier:
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown tier {value!r}") from None


class RuleError(ValueError):
    """A rule that cannot be used, with the rule id and the reason."""

    def __init__(self, rule_id: str, reason: str, line: int | None = None) -> None:
        self.rule_id = rule_id
        self.reason = reason
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}rule {rule_id!r}: {reason}")


@dataclass(frozen=True, slots=True)
class Near:
    """Proximity pattern: a term of ``first`` within ``within`` characters of one of ``second``.

    Either order, unless ``ordered``: then the ``first`` term must end before the ``second``
    one starts (亏了…我负责 is a promise to cover losses; 我负责…不会亏 is something else).
    """

    first: tuple[str, ...]
    second: tuple[str, ...]
    within: int
    ordered: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """One compliance rule. Exactly one of ``terms``, ``near``, ``regex`` is set."""

    id: str
    category: str
    tier: Tier
    description: str
    roles: tuple[str, ...] = ROLES
    hold: bool = False
    terms: tuple[str, ...] = ()
    near: Near | None = None
    regex: str | None = None
    validator: str | None = None
    exceptions: tuple[str, ...] = ()
    # Pinyin initials ("bb" for 保本) are noisy, so a rule opts in for its terms.
    initials: bool = False
    # Homophone variants of the terms (宝本 for 保本); a rule may opt out.
    homophones: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def kind(self) -> str:
        if self.terms:
            return "terms"
        if self.near is not None:
            return "near"
        return "regex"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        rule_id = data.get("id")
        if not isinstance(rule_id, str) or not rule_id.strip():
            raise RuleError(str(rule_id), "id must be a non-empty string")
        category = data.get("category")
        if category not in CATEGORIES:
            raise RuleError(rule_id, f"unknown category {category!r}")
        try:
            tier = Tier.parse(str(data.get("tier", "")))
        except ValueError as exc:
            raise RuleError(rule_id, str(exc)) from None
        if tier is Tier.PASS:
            raise RuleError(rule_id, "tier must be block, warn or info")
        roles = tuple(data.get("roles", ROLES))
        if not roles or any(r not in ROLES for r in roles):
            raise RuleError(rule_id, f"roles must be a non-empty subset of {ROLES}")
        kinds = [k for k in ("terms", "near", "regex") if data.get(k) not in (None, [], "")]
        if len(kinds) != 1:
            if not kinds and any(k in data for k in ("terms", "near", "regex")):
                raise RuleError(rule_id, "pattern is empty (terms, near or regex)")
            raise RuleError(rule_id, "exactly one of terms, near, regex is required")
        terms: tuple[str, ...] = ()
        near: Near | None = None
        regex: str | None = None
        if kinds[0] == "terms":
            terms = _term_list(rule_id, "terms", data["terms"], min_len=2)
        elif kinds[0] == "near":
            spec = data["near"]
            if not isinstance(spec, Mapping):
                raise RuleError(rule_id, "near must be an object {first, second, within}")
            within = spec.get("within")
            if not isinstance(within, int) or isinstance(within, bool) or within < 1:
                raise RuleError(rule_id, f"near.within must be an integer >= 1, got {within!r}")
            ordered = spec.get("ordered", False)
            if not isinstance(ordered, bool):
                raise RuleError(rule_id, f"near.ordered must be true or false, got {ordered!r}")
            near = Near(
                _term_list(rule_id, "near.first", spec.get("first"), min_len=1),
                _term_list(rule_id, "near.second", spec.get("second"), min_len=1),
                within,
                ordered,
            )
        else:
            regex = data["regex"]
            if not isinstance(regex, str):
                raise RuleError(rule_id, "regex must be a string")
            try:
                compiled = re.compile(regex)
            except re.error as exc:
                raise RuleError(rule_id, f"bad regex: {exc}") from None
            if compiled.match(""):
                raise RuleError(rule_id, "regex matches the empty string")
        validator = data.get("validator")
        if validator is not None and (regex is None or validator not in VALIDATORS):
            raise RuleError(rule_id, f"validator must be one of {VALIDATORS} on a regex rule")
        exceptions = _term_list(rule_id, "exceptions", data.get("exceptions", []), min_len=1)
        description = data.get("description", "")
        if not isinstance(description, str) or not description.strip():
            raise RuleError(rule_id, "description is required (cite the regulation)")
        known = {
            "id",
            "category",
            "tier",
            "description",
            "roles",
            "hold",
            "terms",
            "near",
            "regex",
            "validator",
            "exceptions",
            "initials",
            "homophones",
        }
        return cls(
            id=rule_id,
            category=category,
            tier=tier,
            description=description,
            roles=roles,
            hold=bool(data.get("hold", False)),
            terms=terms,
            near=near,
            regex=regex,
            validator=validator,
            exceptions=exceptions,
            initials=bool(data.get("initials", False)),
            homophones=bool(data.get("homophones", True)),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "category": self.category,
            "tier": self.tier.label,
            "roles": list(self.roles),
        }
        if self.hold:
            out["hold"] = True
        if self.terms:
            out["terms"] = list(self.terms)
        if self.near is not None:
            out["near"] = {
                "first": list(self.near.first),
                "second": list(self.near.second),
                "within": self.near.within,
            }
            if self.near.ordered:
                out["near"]["ordered"] = True
        if self.regex is not None:
            out["regex"] = self.regex
        if self.validator is not None:
            out["validator"] = self.validator
        if self.exceptions:
            out["exceptions"] = list(self.exceptions)
        if self.initials:
            out["initials"] = True
        if not self.homophones:
            out["homophones"] = False
        out["description"] = self.description
        out.update(self.extra)
        return out


def _term_list(rule_id: str, name: str, value: Any, min_len: int) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise RuleError(rule_id, f"{name} must be a list of strings")
    items = tuple(value)
    if name != "exceptions" and not items:
        raise RuleError(rule_id, f"{name} is empty")
    # Imported here: normalisation tables are only needed once rules are validated.
    from compliance.normalize import default_normaliser

    fold = default_normaliser().fold
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise RuleError(rule_id, f"{name} contains an empty or non-string term {item!r}")
        if len(fold(item)) < min_len:
            raise RuleError(
                rule_id,
                f"{name} term {item!r} normalises to fewer than {min_len} characters",
            )
    return items


class RuleSet(Sequence[Rule]):
    """An ordered, immutable collection of rules with unique ids."""

    __slots__ = ("_rules", "_by_id")

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._rules: tuple[Rule, ...] = tuple(rules)
        self._by_id: dict[str, Rule] = {}
        for rule in self._rules:
            if rule.id in self._by_id:
                raise RuleError(rule.id, "duplicate rule id")
            self._by_id[rule.id] = rule

    def __len__(self) -> int:
        return len(self._rules)

    def __getitem__(self, index: int) -> Rule:  # type: ignore[override]
        return self._rules[index]

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def get(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    def to_jsonl(self) -> str:
        return "".join(
            json.dumps(rule.to_dict(), ensure_ascii=False) + "\n" for rule in self._rules
        )

    @classmethod
    def from_jsonl(cls, text: str) -> RuleSet:
        rules: list[Rule] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RuleError("?", f"invalid JSON: {exc.msg}", line=number) from None
            if not isinstance(data, dict):
                raise RuleError("?", "each line must be a JSON object", line=number)
            try:
                rules.append(Rule.from_dict(data))
            except RuleError as exc:
                raise RuleError(exc.rule_id, exc.reason, line=number) from None
        try:
            return cls(rules)
        except RuleError as exc:
            raise RuleError(exc.rule_id, exc.reason, line=None) from None


def load_default_rules() -> RuleSet:
    """The shipped rule set, ``compliance/data/rules.jsonl``."""
    text = resources.files("compliance").joinpath("data/rules.jsonl").read_text("utf-8")
    return RuleSet.from_jsonl(text)
