"""Shared fixtures for the compliance tests: one engine per session (building takes ~0.5 s)."""

import pytest

from compliance import ComplianceEngine, load_default_rules, load_demo_products


@pytest.fixture(scope="session")
def engine() -> ComplianceEngine:
    return ComplianceEngine(load_default_rules(), products=load_demo_products())
