"""Customer profiles from a CRM CSV export: parse, validate each row, report bad rows by line.

Used by `chatserver customers import FILE` and POST /api/admin/customers/import.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from chatserver.storage.records import Customer

COLUMNS = ("id", "name", "star", "risk_level", "tags_risk", "tags_qualification", "tags_preference",
           "tags_value", "dedicated_advisor", "team", "phone")
REQUIRED = ("id", "name")
_PHONE = re.compile(r"^1\d{10}$")


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "****"


def parse_customers_csv(text: str) -> tuple[list[Customer], list[RowError]]:
    """Good rows become Customers; each bad row becomes a RowError with its line number."""
    if text.startswith("\ufeff"):
        text = text[1:]  # Excel writes a BOM
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        return [], [RowError(1, f"header lacks column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")]
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        return [], [RowError(1, f"unknown column(s) {', '.join(unknown)}; expected {', '.join(COLUMNS)}")]
    customers: list[Customer] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    for row in reader:
        line = reader.line_num
        try:
            customer = _customer(row)
        except ValueError as exc:
            errors.append(RowError(line, str(exc)))
            continue
        if customer.id in seen:
            errors.append(RowError(line, f"customer id {customer.id!r} appears twice"))
            continue
        seen.add(customer.id)
        customers.append(customer)
    return customers, errors


def _customer(row: dict[str, str | None]) -> Customer:
    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    if None in row:
        raise ValueError("more cells than columns")
    cid, name = cell("id"), cell("name")
    if not cid or len(cid) > 64:
        raise ValueError("id is required (at most 64 characters)")
    if not name:
        raise ValueError("name is required")
    star_text = cell("star") or "1"
    if not star_text.isdigit() or not 1 <= int(star_text) <= 5:
        raise ValueError(f"star must be 1-5, not {star_text!r}")
    risk = (cell("risk_level") or "C1").upper()
    if risk not in ("C1", "C2", "C3", "C4", "C5"):
        raise ValueError(f"risk_level must be C1-C5, not {risk!r}")
    phone = cell("phone")
    if phone and not _PHONE.match(phone):
        raise ValueError("phone must be an 11-digit mainland mobile number")
    return Customer(
        id=cid, name=name, star=int(star_text), risk_level=risk,
        tags_risk=_tags(cell("tags_risk")), tags_qualification=_tags(cell("tags_qualification")),
        tags_preference=_tags(cell("tags_preference")), tags_value=_tags(cell("tags_value")),
        dedicated_advisor=cell("dedicated_advisor") or None, team=cell("team") or None,
        phone_masked=mask_phone(phone) if phone else None,
    )


def _tags(cell: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in cell.split("|") if t.strip())


def customer_from_json(data: object) -> Customer:
    """The admin API's JSON form of one customer; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("a customer is a JSON object")
    tags = data.get("tags") or {}
    if not isinstance(tags, dict):
        raise ValueError("tags must be an object")
    row = {k: str(data[k]) for k in ("id", "name", "star", "risk_level", "dedicated_advisor", "team", "phone")
           if data.get(k) is not None}
    for family in ("risk", "qualification", "preference", "value"):
        values = tags.get(family) or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"tags.{family} must be a list of strings")
        row[f"tags_{family}"] = "|".join(values)
    return _customer(row)  # type: ignore[arg-type]
