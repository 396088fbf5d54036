"""The explorer's HTML pages: semantic, server-rendered tables (docs/explorer.md).

Each page is built from the same functions as its JSON route
(:mod:`registry.web.routes.explorer`), so the figures on a page are the API's. Values are
HTML-escaped; nothing here comes from a request except a group id and a commitment the
visitor typed (public on the ledger anyway), and neither is logged.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
from collections.abc import Iterable, Sequence
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from registry.errors import RegistryError
from registry.web.models import parse_commitment
from registry.web.routes import explorer as data
from registry.web.routes import service_of

router = APIRouter(prefix="/explorer", include_in_schema=False)

#: The repository's node_modules (``npm ci`` in ``make setup``).
NODE_MODULES = Path(__file__).resolve().parents[3] / "node_modules"
#: @noble/hashes and @noble/curves 2.x, as the npm aliases noble-hashes and noble-curves.
VENDOR = {"noble-hashes": NODE_MODULES / "noble-hashes", "noble-curves": NODE_MODULES / "noble-curves"}
NAV = (("", "Overview"), ("/groups", "Groups"), ("/batches", "Batches and anchors"), ("/charts", "Charts"),
       ("/verify", "Verify a bundle"))


#: The verifier's import map: the one inline script, allowed by its hash in the CSP.
#: noble-curves imports "@noble/hashes/...": the same 2.x hashes as noble-hashes.
IMPORT_MAP = ('{"imports": {"noble-hashes/": "/explorer/vendor/noble-hashes/", '
              '"noble-curves/": "/explorer/vendor/noble-curves/", "@noble/hashes/": "/explorer/vendor/noble-hashes/"}}')
_IMPORT_MAP_HASH = base64.b64encode(hashlib.sha256(IMPORT_MAP.encode()).digest()).decode()


def security_headers(connect: str = "'none'") -> dict[str, str]:
    """Headers of every explorer response: scripts, styles and images from this registry
    only (no inline script but the import map, by hash; no other host), not framed
    (clickjacking), no MIME sniffing, no referrer (a looked-up commitment stays here).
    ``connect`` is where scripts may fetch: the verifier reads the visitor's ledger RPC
    URL, which can be any host, so its page allows http: and https:."""
    policy = (f"default-src 'none'; script-src 'self' 'sha256-{_IMPORT_MAP_HASH}'; style-src 'self'; "
              f"img-src 'self'; connect-src {connect}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    return {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def verifier_available() -> bool:
    return all(path.is_dir() for path in VENDOR.values())


def esc(value: object) -> str:
    return "—" if value is None else html.escape(str(value), quote=True)


def when(seconds: object) -> str:
    if not isinstance(seconds, int):
        return "—"
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return f'<time datetime="{moment.isoformat()}" data-seconds="{seconds}">{moment:%Y-%m-%d %H:%M:%S} UTC</time>'


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], table_id: str = "") -> str:
    """A table; cells are already-escaped HTML."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return (f'<div class="scroll"><table{ident}><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def facts(items: Sequence[tuple[str, str]], list_id: str = "") -> str:
    """A description list; values are already-escaped HTML."""
    ident = f' id="{list_id}"' if list_id else ""
    return f"<dl{ident}>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def page(title: str, current: str, body: str, head: str = "", scripts: Sequence[str] = (),
         connect: str = "'none'") -> HTMLResponse:
    nav = "".join(
        f'<li><a href="/explorer{path}"{" aria-current=page" if path == current else ""}>{esc(name)}</a></li>'
        for path, name in NAV
    )
    tags = "".join(f'<script type="module" src="/explorer/static/{s}"></script>' for s in scripts)
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · letro-zkid explorer</title>"
        '<link rel="stylesheet" href="/explorer/static/explorer.css">'
        f"{head}{tags}</head><body>"
        '<a class="skip" href="#main">Skip to content</a>'
        f'<header><p class="brand">letro-zkid registry explorer</p><nav aria-label="Explorer"><ul>{nav}</ul></nav></header>'
        f'<main id="main"><h1>{esc(title)}</h1>{body}</main>'
        "<footer><p>Public state only: what is on the ledger or in the evidence log's signed checkpoints. "
        'The JSON behind each page is the registry API (<code>/v1/explorer/…</code>, docs/api.md).</p></footer>'
        "</body></html>"
    )
    return HTMLResponse(document, headers=security_headers(connect))


def tx(value: object) -> str:
    return f"<code class=hash>{esc(value)}</code>"


@router.api_route("", methods=["GET", "HEAD"])
def overview_page(request: Request) -> HTMLResponse:
    o = data.overview(service_of(request))
    items = [
        ("Region", esc(o["region"])), ("Chain id", f'<span data-field="chain_id">{esc(o["chain_id"])}</span>'),
        *[(f"{name} contract", tx(address)) for name, address in o["contracts"].items()],
        ("Head block", f'<span data-field="head_block">{esc(o["head_block"])}</span>'),
        ("Indexed block", f'<span data-field="indexed_block">{esc(o["indexed_block"])}</span>'),
        ("Health", esc(o["status"]) + ("" if not o["reasons"] else " (" + esc(", ".join(o["reasons"])) + ")")),
        ("Groups", f'<span data-field="groups">{esc(o["groups"])}</span>'),
    ]
    body = "<section aria-labelledby=reg><h2 id=reg>Registry</h2>" + facts(items, "overview") + "</section>"
    ev = o["evidence"]
    if ev is not None:
        latest = ev["latest_anchor"]
        ev_items = [("Log origin", esc(ev["origin"])), ("Log key", tx(ev["log_key"])),
                    ("Log size", f'<span data-field="evidence_size">{esc(ev["size"])}</span>'),
                    ("Anchored size", f'<span data-field="anchored_size">{esc(ev["anchored_size"])}</span>')]
        if latest is not None:
            ev_items += [("Latest anchor", f'block {esc(latest["block"])}, {when(latest["time"])}, tx {tx(latest["tx_hash"])}'),
                         ("Its checkpoint", f'<pre>{esc(latest["checkpoint"])}</pre>')]
        body += "<section aria-labelledby=ev><h2 id=ev>Evidence log</h2>" + facts(ev_items, "evidence") + "</section>"
    return page("Overview", "", body)


@router.api_route("/groups", methods=["GET", "HEAD"])
def groups_page(request: Request) -> HTMLResponse:
    rows = [
        (f'<a href="/explorer/groups/{g["group_id"]}">{esc(g["group_id"])}</a>', esc(g["size"]), esc(g["depth"]),
         tx(g["root"]), esc(g["root_window"]), esc(None if g["admission"] is None else g["admission"].get("policy")))
        for g in service_of(request).groups()
    ]
    return page("Groups", "/groups", table("Groups", ["Group", "Size", "Depth", "Current root", "Root window (s)",
                                                       "Admission policy"], rows, "groups"))


def _lookup(request: Request, group_id: int, commitment: str) -> str:
    """The member status of ``commitment`` (the page's form; the API's /v1/groups/{id}/members/{c})."""
    try:  # canonical ASCII decimal, at most 80 digits (not int(): "²" or 5000 digits raise ValueError)
        status = service_of(request).member_status(group_id, parse_commitment(commitment))
    except RegistryError as exc:
        code = "not_found" if exc.code == "not_member" else "invalid"
        text = "Not a member of this group." if code == "not_found" else "Not a commitment (a decimal field element)."
        return f'<p role="status" id="lookup-result" data-status="{code}">{text}</p>'
    return (f'<p role="status" id="lookup-result" data-status="{esc(status.status)}">Status: '
            f"<strong>{esc(status.status)}</strong>; leaf index {esc(status.index)}; block {esc(status.block_number)}; "
            f"transaction {tx(status.tx_hash)}.</p>")


@router.api_route("/groups/{group_id}", methods=["GET", "HEAD"])
def group_page(group_id: int, request: Request, commitment: str | None = None) -> HTMLResponse:
    service = service_of(request)
    g = service.group_info(group_id)
    items = [("Size", f'<span data-field="size">{esc(g["size"])}</span>'), ("Depth", esc(g["depth"])),
             ("Current root", tx(g["root"])), ("Root window", f'{esc(g["root_window"])} s'),
             ("Admission policy", esc(None if g["admission"] is None else g["admission"].get("policy")))]
    roots = [(tx(r["root"]), f'{esc(r["created_block"])}, {when(r["created_at"])}',
              "current" if r["superseded_at"] is None else f'{esc(r["superseded_block"])}, {when(r["superseded_at"])}',
              "—" if r["valid_until"] is None else when(r["valid_until"]))
             for r in data.roots(service, group_id)]
    form = (f'<form method="get" action="/explorer/groups/{group_id}" role="search">'
            '<label for="commitment">Identity commitment (decimal)</label>'
            f'<input id="commitment" name="commitment" inputmode="numeric" autocomplete="off" value="{esc(commitment or "")}">'
            "<button type=submit>Look up</button></form>")
    result = "" if not commitment else _lookup(request, group_id, commitment)
    body = (facts(items, "group") + "<section aria-labelledby=lk><h2 id=lk>Member lookup</h2>" + form + result
            + "</section><section aria-labelledby=rh><h2 id=rh>Root history</h2>"
            + table("Roots, newest first", ["Root", "Became current (block, time)", "Superseded (block, time)",
                                              "Valid until"], roots, "roots") + "</section>")
    return page(f"Group {group_id}", "/groups", body)


@router.api_route("/batches", methods=["GET", "HEAD"])
def batches_page(request: Request) -> HTMLResponse:
    service = service_of(request)
    receipts, _ = data._state(request)
    rows = [(tx(b["tx_hash"]), esc(b["group_id"]), esc(b["block"]), when(b["time"]), esc(b["members"]),
             esc(b["gas_used"]), esc(b["fee_wei"])) for b in data.batches(service, receipts)]
    anchors = [(esc(a["tree_size"]), esc(a["block"]), when(a["time"]), tx(a["root_hash"]),
                f'<details><summary>checkpoint</summary><pre>{esc(a["checkpoint"])}</pre></details>')
               for a in data.anchors(service)]
    body = ("<section aria-labelledby=b><h2 id=b>addMembers transactions</h2>"
            + table("Batches, newest first", ["Transaction", "Group", "Block", "Time", "Members", "Gas used",
                                               "Fee (wei)"], rows, "batches")
            + "</section><section aria-labelledby=a><h2 id=a>Evidence log anchors</h2>"
            + table("Anchors, newest first", ["Tree size", "Block", "Time", "Root hash", "Signed checkpoint"],
                    anchors, "anchors") + "</section>")
    return page("Batches and anchors", "/batches", body)


@router.api_route("/charts", methods=["GET", "HEAD"])
def charts_page(request: Request) -> HTMLResponse:
    c = data.charts(service_of(request), request)
    anchored = [(when(p["time"]), esc(p["block"]), f'<data value="{p["members"]}">{p["members"]}</data>')
                for p in c["anchored_members"]]
    gas = [(f'<data value="{p["batch_size"]}">{p["batch_size"]}</data>',
            f'<data value="{p["gas_per_member"]}">{p["gas_per_member"]}</data>') for p in c["gas_per_member"]]
    reasons = sorted(c["counters"][-1]["authorizations"]) if c["counters"] else []
    samples = [(when(s["time"]), f'<data value="{s["registrations_accepted"]}">{s["registrations_accepted"]}</data>',
                *[f'<data value="{s["authorizations"][r]}">{s["authorizations"][r]}</data>' for r in reasons])
               for s in c["counters"]]
    body = ('<p>Aggregates only: counters the registry keeps, sampled at most once a minute while this page is '
            "viewed, and public ledger data. Without JavaScript, the tables are the charts.</p>"
            + '<figure data-chart="line" data-x="1" data-y="2">' + table("Anchored members over time", ["Time", "Block", "Members"], anchored, "chart-anchored") + "</figure>"
            + '<figure data-chart="scatter" data-x="0" data-y="1">' + table("Gas per member by batch size", ["Batch size", "Gas per member"], gas, "chart-gas") + "</figure>"
            + '<figure data-chart="line" data-x="0" data-y="1-">' + table("Registrations accepted and authorizations by outcome (cumulative)",
                                                                   ["Time", "Registrations accepted", *reasons], samples, "chart-counters") + "</figure>")
    return page("Charts", "/charts", body, scripts=["charts.js"])


def _import_map() -> str:
    return f'<script type="importmap">{IMPORT_MAP}</script>'


@router.api_route("/verify", methods=["GET", "HEAD"])
def verify_page(request: Request) -> HTMLResponse:
    service = service_of(request)
    manifest = service.manifest
    vkey = service.evidence.verifier.vkey() if service.evidence is not None else ""
    relays = ", ".join(request.app.state.settings.relay_keys or [])
    available = verifier_available()
    body = ("<p>The checks run <strong>in your browser</strong>, in the order of <code>zkid evidence verify</code>, "
            "against the trusted values below and the ledger through the RPC URL you give. The values are "
            "prefilled with what this registry says about itself: replace them with your own trusted values, "
            "or the verdict proves nothing to a third party.</p>"
            + ("" if available else '<p role="alert">The verifier\'s libraries are not installed on this '
               "registry (run <code>npm ci</code>); use <code>zkid evidence verify</code>.</p>")
            + "<noscript><p>The verifier runs in your browser and needs JavaScript; without it, use "
            "<code>zkid evidence verify</code>.</p></noscript>"
            + _verify_form(vkey, manifest.chain_id, manifest.genesis_hash.lower(), manifest.address("EvidenceAnchor"),
                           relays)
            + '<section aria-labelledby=res aria-live="polite"><h2 id=res>Result</h2>'
            '<p id="verdict" data-state="idle">No bundle checked yet.</p>'
            '<div class="scroll"><table id="checks"><caption>Checks, in order</caption><thead><tr><th scope=col>Check</th>'
            "<th scope=col>Status</th><th scope=col>Detail</th></tr></thead><tbody></tbody></table></div>"
            '<div class="scroll"><table id="timeline"><caption>Delivery timeline</caption><thead><tr><th scope=col>Time</th>'
            "<th scope=col>Event</th><th scope=col>Reference</th></tr></thead><tbody></tbody></table></div></section>")
    return page("Verify an evidence bundle", "/verify", body, head=_import_map(), scripts=["verify-page.js"],
                connect="http: https:")


def _verify_form(vkey: str, chain_id: int, genesis: str, anchor: str, relays: str) -> str:
    def field(ident: str, label: str, value: str, hint: str = "") -> str:
        return (f'<p><label for="{ident}">{esc(label)}</label><input id="{ident}" name="{ident}" value="{esc(value)}" '
                f'autocomplete="off" spellcheck="false">{"" if not hint else f"<small>{esc(hint)}</small>"}</p>')

    ours = "Prefilled by this registry about itself: type or paste your own."
    return ('<form id="verify-form"><fieldset><legend>The bundle</legend>'
            '<p><label for="bundle-file">Bundle file (JSON)</label><input id="bundle-file" type="file" accept=".json,application/json"></p>'
            '<p><label for="bundle">…or paste it</label><textarea id="bundle" rows="6" spellcheck="false"></textarea></p>'
            "</fieldset><fieldset><legend>Your trusted values</legend>"
            + field("log-key", "Log key (vkey)", vkey, ours)
            + field("chain-id", "Chain id", str(chain_id), ours)
            + field("genesis-hash", "Genesis block hash (checked when given)", genesis,
                    "Prefilled by this registry: a wrong one can only make the ledger check fail.")
            + field("anchor-contract", "EvidenceAnchor contract", anchor, ours)
            + field("relay-keys", "Trusted relay keys (comma-separated addresses)", relays, ours if relays else "")
            + field("rpc-url", "Ledger RPC URL", "", "The anchor is read from the ledger through this URL, not from this registry.")
            + '</fieldset><button type="submit">Verify in this browser</button></form>')
