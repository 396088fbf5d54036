"""docs/api.md matches the code: its error table equals ``registry.errors`` (codes and
statuses), its authorization table equals the refusal statuses, it lists every route of
the OpenAPI document and every field the answers of a real registry carry; and the API
serves no HTML page that would need the network (/docs and /redoc are gone)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from registry.errors import OTHER_STATUS, STATUS, refusal_status
from registry.service.authorization import Reason
from tests.support.registry import AUTH, Registry

DOC = (Path(__file__).resolve().parents[3] / "docs" / "api.md").read_text(encoding="utf-8")
_CODE = re.compile(r"`([a-z][a-z0-9_]*)`")
_STATUS = re.compile(r"\b([1-5][0-9][0-9])\b")


def _section(start: str, end: str) -> str:
    """The text of docs/api.md from the line starting with ``start`` to ``end``."""
    begin = DOC.index(start)
    return DOC[begin : DOC.index(end, begin + len(start))]


def _rows(text: str) -> list[list[str]]:
    """The cells of the body rows of the markdown tables in ``text`` (escaped pipes kept)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def documented_errors() -> dict[str, set[int]]:
    """docs/api.md "Error codes": each code with the statuses of its row."""
    table: dict[str, set[int]] = {}
    for first, statuses, *_ in _rows(_section("## Error codes", "\n## ")):
        codes = _CODE.findall(first)
        if not codes:  # the header, and the row pointing at the authorization table
            continue
        for code in codes:
            assert code not in table, f"{code} has two rows in docs/api.md"
            table[code] = {int(s) for s in _STATUS.findall(statuses)}
    return table


def test_error_table_equals_the_code() -> None:
    code_table = {code: {status, *([OTHER_STATUS[code]] if code in OTHER_STATUS else [])} for code, status in STATUS.items()}
    documented = documented_errors()
    assert set(documented) - set(code_table) == set(), "codes in docs/api.md the code does not have"
    assert set(code_table) - set(documented) == set(), "codes of registry/errors.py missing from docs/api.md"
    assert documented == code_table
    assert "not_anchored" in documented and documented["invalid_commitment"] == {422}


def test_authorization_table_equals_the_refusal_statuses() -> None:
    documented: dict[str, int] = {}
    for status, reasons in _rows(_section("| status | reason |", "\n\n")):
        if status.isdigit():
            for reason in _CODE.findall(reasons):
                if reason in {r.value for r in Reason}:  # skip linked words such as `index_max_age`
                    documented[reason] = int(status)
    assert documented == {"ok": 200, **{r.value: refusal_status(r.value) for r in Reason if r is not Reason.OK}}


def _documented_routes() -> set[tuple[str, str]]:
    routes = set()
    for cells in _rows(_section("| method and path |", "\n\n")):
        for method, path in re.findall(r"`(GET|POST|PUT|DELETE|PATCH) (/[^`?\s]*)", cells[0]):
            routes.add((method, path))
    return routes


def test_every_route_of_the_openapi_document_is_documented(registry: Registry) -> None:
    with registry.client() as http:
        spec = http.get("/openapi.json").json()
    served = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert ("GET", "/v1/evidence/{evidence_id}/bundle") in served and ("GET", "/v1/log/checkpoint") in served
    assert served - _documented_routes() == set()
    assert _documented_routes() - served == set(), "docs/api.md lists routes the API does not serve"


def _fields(value: object) -> set[str]:
    """Every key of a JSON answer, nested ones included."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _fields(v)}
    if isinstance(value, list):
        return {k for v in value for k in _fields(v)}
    return set()


def test_every_field_of_the_answers_is_documented(registry: Registry) -> None:
    commitment = 0x1234_5678_9ABC_DEF0_1234
    with registry.client() as http:
        registered = http.post("/v1/groups/0/members", json={"commitments": [str(commitment)]}, headers=AUTH)
        assert registered.status_code == 202, registered.text
        registry.wait_included(0, [commitment])
        group = http.get("/v1/groups/0").json()
        answers = {
            "registration": registered.json(),
            "health": http.get("/v1/health").json(),
            "groups": http.get("/v1/groups").json(),
            "root": http.get(f"/v1/roots/{group['root']}").json(),
            "members": http.get("/v1/groups/0/members").json(),
            "member": http.get(f"/v1/groups/0/members/{commitment}").json(),
            "proof": http.get(f"/v1/groups/0/proofs/{commitment}").json(),
            "relays": http.get("/v1/evidence/relays").json(),
        }
    assert {"evidence", "chain_id"} <= set(answers["health"])
    assert {"created_at", "superseded_block"} <= set(answers["root"])
    for name, answer in answers.items():
        missing = {f for f in _fields(answer) if f'"{f}"' not in DOC and f"`{f}`" not in DOC}
        assert missing == set(), f"fields of the {name} answer missing from docs/api.md"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_no_html_documentation_page(registry: Registry, path: str) -> None:
    with registry.client() as http:
        r = http.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert http.get("/openapi.json").status_code == 200


def test_no_answer_references_an_external_url(registry: Registry) -> None:
    """No route answers HTML, and no page loads anything from another host."""
    with registry.client() as http:
        spec = http.get("/openapi.json").json()
        for path, item in spec["paths"].items():
            if "get" in item and "{" not in path:
                r = http.get(path)
                assert "text/html" not in r.headers.get("content-type", ""), path
                assert not re.search(r"<script|<link|https?://(?!127\.0\.0\.1|localhost)", r.text), path
