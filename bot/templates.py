"""Quick-reply templates for the advisor console and their placeholder rendering.
Templates ship in `data/quick_replies.jsonl`; `render_template` fills {customer_name} etc."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from bot.kb import KBFormatError, read_jsonl

# Used when the hub has no value for a known placeholder, so the investor never sees braces.
DEFAULT_VALUES: Mapping[str, str] = {
    "customer_name": "客户",
    "advisor_name": "客服",
}
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class QuickReply:
    id: str
    title: str
    text: str
    team: str | None = None


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill `{name}` placeholders in one pass.

    - a name in `values` (non-empty) is replaced by its value, inserted literally (no recursion);
    - a name in DEFAULT_VALUES without a usable value gets the default ("客户", "客服");
    - any other `{name}` is left exactly as written so the advisor sees it before sending
      (`placeholders()` lists them);
    - `{{` and `}}` produce literal braces; any other brace is kept as is.
    """

    def fill(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        value = values.get(name)
        if value is not None and str(value).strip():
            return str(value)
        if name in DEFAULT_VALUES:
            return DEFAULT_VALUES[name]
        return token

    return _PLACEHOLDER.sub(fill, template)


def placeholders(template: str) -> tuple[str, ...]:
    """Placeholder names used in a template, in order of first use."""
    names: list[str] = []
    for m in _PLACEHOLDER.finditer(template):
        name = m.group(1)
        if name and name not in names:
            names.append(name)
    return tuple(names)


def parse_quick_replies(text: str) -> tuple[QuickReply, ...]:
    """Parse quick replies from JSONL (`id`, `title`, `text`, optional `team`)."""
    replies: list[QuickReply] = []
    seen: set[str] = set()
    for number, data in read_jsonl(text):
        if not isinstance(data, dict):
            raise KBFormatError(number, "quick reply must be a JSON object")
        for key in ("id", "title", "text"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise KBFormatError(number, f"missing or empty field '{key}'")
        team = data.get("team")
        if team is not None and not isinstance(team, str):
            raise KBFormatError(number, "field 'team' must be a string or null")
        if data["id"] in seen:
            raise KBFormatError(number, f"duplicate id '{data['id']}'")
        seen.add(data["id"])
        replies.append(QuickReply(data["id"], data["title"], data["text"], team))
    return tuple(replies)


def load_quick_replies() -> tuple[QuickReply, ...]:
    """The shipped quick-reply templates (`bot/data/quick_replies.jsonl`)."""
    text = resources.files("bot").joinpath("data/quick_replies.jsonl").read_text(encoding="utf-8")
    return parse_quick_replies(text)
