"""Product catalog for suitability checks: names and aliases with their risk level R1–R5.

Customer risk C1..C5 matches product risk R1..R5 (适当性管理办法: 风险等级匹配).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

RISK_LEVELS = ("R1", "R2", "R3", "R4", "R5")
CUSTOMER_LEVELS = ("C1", "C2", "C3", "C4", "C5")


class ProductError(ValueError):
    """A catalog entry that cannot be used."""


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    aliases: tuple[str, ...]
    risk: int  # 1..5
    kind: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Product:
        product_id = data.get("id")
        name = data.get("name")
        risk = data.get("risk")
        if not isinstance(product_id, str) or not product_id:
            raise ProductError(f"product id must be a non-empty string, got {product_id!r}")
        if not isinstance(name, str) or not name.strip():
            raise ProductError(f"product {product_id}: name is required")
        if risk not in RISK_LEVELS:
            raise ProductError(f"product {product_id}: risk must be one of {RISK_LEVELS}")
        aliases = data.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise ProductError(f"product {product_id}: aliases must be non-empty strings")
        return cls(
            product_id, name, tuple(aliases), RISK_LEVELS.index(risk) + 1, str(data.get("kind", ""))
        )


def customer_level(customer_risk: str) -> int:
    """C1..C5 → 1..5; raises ValueError on anything else."""
    value = customer_risk.strip().upper()
    if value not in CUSTOMER_LEVELS:
        raise ValueError(f"customer_risk must be one of {CUSTOMER_LEVELS}, got {customer_risk!r}")
    return CUSTOMER_LEVELS.index(value) + 1


class ProductCatalog:
    """Immutable list of products; names and aliases become automaton keys in the engine."""

    __slots__ = ("_products",)

    def __init__(self, products: Iterable[Product] = ()) -> None:
        self._products: tuple[Product, ...] = tuple(products)
        ids = [p.id for p in self._products]
        if len(ids) != len(set(ids)):
            raise ProductError("duplicate product id")

    def __iter__(self) -> Iterator[Product]:
        return iter(self._products)

    def __len__(self) -> int:
        return len(self._products)

    def __getitem__(self, index: int) -> Product:
        return self._products[index]

    @classmethod
    def from_jsonl(cls, text: str) -> ProductCatalog:
        products = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    products.append(Product.from_dict(json.loads(line)))
                except (ProductError, json.JSONDecodeError) as exc:
                    raise ProductError(f"line {number}: {exc}") from None
        return cls(products)


def load_demo_products() -> ProductCatalog:
    """The shipped demo catalog, ``compliance/data/products.jsonl`` (fictional products)."""
    text = resources.files("compliance").joinpath("data/products.jsonl").read_text("utf-8")
    return ProductCatalog.from_jsonl(text)
