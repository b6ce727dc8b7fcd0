"""Live compliance filter for advisor, investor and bot messages: a pure library.

Rules → ComplianceEngine (immutable, built once) → ``check(text, role, ...)`` → Verdict.
"""

from compliance.engine import ComplianceEngine, Hit, Verdict
from compliance.normalize import Normaliser, default_normaliser
from compliance.products import Product, ProductCatalog, ProductError, load_demo_products
from compliance.rules import CATEGORIES, Near, Rule, RuleError, RuleSet, Tier, load_default_rules

__all__ = [
    "CATEGORIES",
    "ComplianceEngine",
    "Hit",
    "Near",
    "Normaliser",
    "Product",
    "ProductCatalog",
    "ProductError",
    "Rule",
    "RuleError",
    "RuleSet",
    "Tier",
    "Verdict",
    "default_normaliser",
    "load_default_rules",
    "load_demo_products",
]
