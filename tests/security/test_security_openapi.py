"""The OpenAPI document matches the server: every route listed, and schemathesis finds no 5xx
and no response outside the documented schemas, status codes and media types.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from chatserver.http_api import ANYONE, route_table

SCHEMATHESIS = Path(sys.executable).with_name("st")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def test_document_lists_every_route_with_its_roles(hub):
    status, doc = await hub.http("GET", "/api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    listed = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert listed == {(m, p) for m, p, _, _ in route_table()}
    for method, path, roles, _ in route_table():
        operation = doc["paths"][path][method.lower()]
        assert operation["description"] == f"roles: {', '.join(sorted(roles))}"
        assert ("security" in operation) == (roles != ANYONE), (method, path)
        assert "default" in operation["responses"] and "200" in operation["responses"]


def test_every_route_has_a_written_schema():
    from chatserver.openapi import ENDPOINTS

    assert set(ENDPOINTS) == {(m, p) for m, p, _, _ in route_table()}


async def run_schemathesis(
    hub, tmp_path: Path, token: str | None, examples: int
) -> tuple[int, str]:
    args = [
        str(SCHEMATHESIS),
        "run",
        f"{hub.base_url}/api/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(examples),
        "--phases",
        "examples,fuzzing",
        "--seed",
        "20261123",
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--no-color",
        "--request-timeout",
        "20",
        # Fuzzing the access lists would ban the fuzzer itself; they have their own tests.
        "--exclude-path",
        "/api/admin/access-lists",
    ]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(hub, tmp_path):
    # The per-address request budget is meant for people; the fuzzer sends hundreds a second.
    hub.services.guard.ip_rate, hub.services.guard.ip_burst = 1e6, 1e6
    code, out = await run_schemathesis(hub, tmp_path, await hub.token("admin"), examples=12)
    print(out[-1500:])
    assert code == 0, out[-6000:]
    assert "generated" in out and " 0 generated" not in out
