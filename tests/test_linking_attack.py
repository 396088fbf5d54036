"""Linking attack on data at rest (docs/privacy.md).

Real clients, each from its own loopback address (127.0.0.x), register through a real
registry (real Anvil), send blobs to each other through a real relay and pick them up.
Then an attacker holding every file of both data directories (every SQLite table opened
read-only, the raw bytes and modification times of every other file) and the chain (the
registry's index of it is among those files) tries to name

- the IP address behind each commitment (registration),
- the IP address behind each nullifier (authorization),
- the sender's and the recipient's IP address of each conversation (send/pickup),

by joining on time (nearest time) and on order (rank against rank: rowids, ids, leaf
order, first appearance of an IP). The attacker is generic: it does not know table names;
it takes any cell that is an IP address, any cell (or JSON field) that looks like a Unix
time or an ISO timestamp, and any row that holds one of the identifiers. It reports its
best strategy; that must be no better than guessing within the batch.

:func:`test_the_attacker_wins_against_a_leaky_store` shows that the same attacker names
every client when the stores keep times to the second and arrival-ordered ids (the layout
before docs/privacy.md).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import random
import secrets
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support.wait import wait_until

_MAGIC = b"SQLite format 3\x00"
_T_MIN, _T_MAX = 1_000_000_000, 4_000_000_000


# ------------------------------------------------------------------------------ the attacker


@dataclass(frozen=True)
class Event:
    source: str  # file:table (order only) or file:table.column (a time column), or a raw file
    time: float | None  # the column's time-like value
    order: float  # rowid, or position in the scan
    value: str  # an IP address or an identifier (as the test names it)


def _time_like(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and _T_MIN <= value <= _T_MAX:
        return float(value)
    if isinstance(value, str) and 10 <= len(value) <= 40 and value[:2].isdigit():
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed.timestamp()
    return None


def _ip(value: object) -> str | None:
    """An IPv4 or IPv6 address (IPv4-mapped included), in its normal spelling."""
    if isinstance(value, str) and 7 <= len(value) <= 45 and (value.count(".") == 3 or value.count(":") >= 2):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return None
    return None


def _cells(row: Sequence[object], names: Sequence[str]) -> list[tuple[str, object]]:
    """The row's (column, value) pairs, JSON text expanded into its leaves (column.path)."""
    out: list[tuple[str, object]] = []
    stack: list[tuple[str, object]] = list(zip(names, row))
    while stack:
        key, value = stack.pop()
        if isinstance(value, str) and value[:1] in "{[":
            try:
                stack.append((key, json.loads(value)))
                continue
            except ValueError:
                pass
        if isinstance(value, dict):
            stack.extend((f"{key}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{key}[]", v) for v in value)
        else:
            out.append((key, value))
    return out


def _forms(identifiers: dict[str, bytes | int]) -> dict[object, str]:
    """Every way a store may spell an identifier -> its name."""
    forms: dict[object, str] = {}
    for name, value in identifiers.items():
        raw = value if isinstance(value, bytes) else value.to_bytes(32, "big")
        number = int.from_bytes(raw, "big")
        for form in (raw, raw.hex(), "0x" + raw.hex(), str(number), number):
            forms[form] = name
    return forms


def scan(directories: Iterable[Path], identifiers: dict[str, bytes | int]) -> tuple[list[Event], list[Event]]:
    """(IP events, identifier events) from every file under ``directories``."""
    forms = _forms(identifiers)
    raw_forms = [(f, n) for f, n in forms.items() if isinstance(f, bytes)] + [
        (f.encode(), n) for f, n in forms.items() if isinstance(f, str) and len(f) >= 64
    ]
    ips: list[Event] = []
    ids: list[Event] = []
    for directory in directories:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            with path.open("rb") as handle:
                head = handle.read(16)
            if head == _MAGIC and not path.name.endswith(("-wal", "-shm")):
                _scan_sqlite(path, forms, ips, ids)
            else:
                data = path.read_bytes()
                mtime = path.stat().st_mtime
                found = {n for f, n in raw_forms if f in data}
                for name in sorted(found):
                    ids.append(Event(str(path), mtime, 0.0, name))
    return ips, ids


def _scan_sqlite(path: Path, forms: dict[object, str], ips: list[Event], ids: list[Event]) -> None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            try:
                cursor = db.execute(f'SELECT rowid, * FROM "{table}"')
                has_rowid = True
            except sqlite3.OperationalError:  # WITHOUT ROWID
                cursor = db.execute(f'SELECT * FROM "{table}"')
                has_rowid = False
            names = [str(d[0]) for d in cursor.description][1 if has_rowid else 0:]
            rows = cursor.fetchall()
            source = f"{path.parent.name}/{path.name}:{table}"
            for position, row in enumerate(rows):
                order = float(row[0]) if has_rowid else float(position)
                cells = _cells(row[1:] if has_rowid else row, names)
                # One event per time column (each may be the one that joins), one by order.
                times: list[tuple[str, float | None]] = [(source, None)]
                times += [(f"{source}.{k}", t) for k, t in ((k, _time_like(v)) for k, v in cells) if t is not None]
                for _, cell in cells:
                    ip = _ip(cell)
                    try:
                        name = forms.get(cell)
                    except TypeError:
                        name = None
                    for where, when in times:
                        if ip is not None:
                            ips.append(Event(where, when, order, ip))
                        if name is not None:
                            ids.append(Event(where, when, order, name))
    finally:
        db.close()


def beside_addresses(directories: Iterable[Path]) -> list[tuple[str, str, object]]:
    """Every cell that shares a row with an IP address and is neither an address nor a
    whole hour: (table, column, value). A count, a size or a flag per address and hour is a
    fingerprint of what the address did (how many blobs it sent, how long it polled),
    which joins addresses to one another and to the batches on chain; a time finer than
    the hour sorts the addresses against every other store."""
    found: list[tuple[str, str, object]] = []
    for directory in directories:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            with path.open("rb") as handle:
                if handle.read(16) != _MAGIC or path.name.endswith(("-wal", "-shm")):
                    continue
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                    cursor = db.execute(f'SELECT * FROM "{table}"')
                    names = [str(d[0]) for d in cursor.description]
                    for row in cursor.fetchall():
                        cells = _cells(row, names)
                        if any(_ip(v) is not None for _, v in cells):
                            found += [
                                (f"{path.name}:{table}", k, v)
                                for k, v in cells
                                if _ip(v) is None and ((t := _time_like(v)) is None or t % 3600)
                            ]
            finally:
                db.close()
    return found


def kendall_tau(values: Sequence[float]) -> float:
    """Kendall's rank correlation of ``values`` with their positions (no ties): 1 in
    order, -1 reversed, about 0 for a random order."""
    n = len(values)
    concordant = sum(1 if values[j] > values[i] else -1 for i in range(n) for j in range(i + 1, n))
    return concordant / (n * (n - 1) / 2)


def _first_seen(events: list[Event], rng: random.Random) -> list[str]:
    """IP addresses by first appearance (time, then order; ties in random order)."""
    first: dict[str, tuple[float, float, float]] = {}
    for e in events:
        key = (e.time if e.time is not None else 0.0, e.order, rng.random())
        if e.value not in first or key < first[e.value]:
            first[e.value] = key
    return sorted(first, key=lambda ip: first[ip])


def strategies(
    ips: list[Event], ids: list[Event], targets: Sequence[str], rng: random.Random
) -> dict[str, dict[str, list[str]]]:
    """For each strategy: target -> the IP addresses it names, in the order of the target's
    events (first event first). Strategies: every (identifier source, IP source) pair,
    joined by nearest time and by rank."""
    by_ip_source: dict[str, list[Event]] = defaultdict(list)
    for e in ips:
        by_ip_source[e.source].append(e)
    by_id_source: dict[str, list[Event]] = defaultdict(list)
    wanted = set(targets)
    for e in ids:
        if e.value in wanted:
            by_id_source[e.source].append(e)
    out: dict[str, dict[str, list[str]]] = {}
    for id_source, id_events in by_id_source.items():
        ordered = sorted(id_events, key=lambda e: (e.time if e.time is not None else 0.0, e.order, rng.random()))
        for ip_source, ip_events in by_ip_source.items():
            # Rank join: the k-th identifier event is the k-th IP address to appear.
            ranked = _first_seen(ip_events, rng)
            guess: dict[str, list[str]] = defaultdict(list)
            for k, e in enumerate(ordered):
                if k < len(ranked):
                    guess[e.value].append(ranked[k])
            out[f"rank {id_source} ~ {ip_source}"] = dict(guess)
            # Time join: the IP address seen in the same second, else the nearest (ties: a
            # guess among them). Seconds, because a log to the second is rounded down.
            timed = [(int(i.time), i.value) for i in ip_events if i.time is not None]
            if timed and any(e.time is not None for e in ordered):
                guess = defaultdict(list)
                for e in ordered:
                    if e.time is None:
                        continue
                    second = int(e.time)
                    best = min(abs(t - second) for t, _ in timed)
                    near = sorted({ip for t, ip in timed if abs(t - second) == best})
                    guess[e.value].append(rng.choice(near))
                out[f"time {id_source} ~ {ip_source}"] = dict(guess)
    return out


def best_single(guesses: dict[str, dict[str, list[str]]], truth: dict[str, str]) -> tuple[int, str]:
    """Most targets named right by one strategy (its first event's IP)."""
    best = (0, "none")
    for name, guess in guesses.items():
        hits = sum(1 for t, ip in truth.items() if guess.get(t) and guess[t][0] == ip)
        best = max(best, (hits, name))
    return best


def best_pairs(guesses: dict[str, dict[str, list[str]]], truth: dict[str, tuple[str, str]]) -> tuple[int, str]:
    """Most conversations whose sender (first event) and recipient (last event) IPs one
    strategy names right."""
    best = (0, "none")
    for name, guess in guesses.items():
        hits = sum(1 for t, (s, r) in truth.items() if guess.get(t) and guess[t][0] == s and guess[t][-1] == r)
        best = max(best, (hits, name))
    return best


# ------------------------------------------------------------------------------ the attacker can win


def test_the_attacker_wins_against_a_leaky_store(tmp_path: Path) -> None:
    """The layout before docs/privacy.md: a connection log ``(second, ip)`` and an outbox with
    AUTOINCREMENT ids and times to the microsecond. The attacker names every registrant,
    by rank and by time: the attack can fail the real test below."""
    rng = random.Random(7)
    n = 12
    start = 1_760_000_000.0
    ips = [f"10.0.0.{k}" for k in rng.sample(range(1, 200), n)]
    commitments = {f"c{i}": secrets.randbits(250) for i in range(n)}
    log = sqlite3.connect(tmp_path / "access.log.sqlite")
    log.execute("CREATE TABLE connections (at INTEGER NOT NULL, ip TEXT NOT NULL, PRIMARY KEY (at, ip)) WITHOUT ROWID")
    box = sqlite3.connect(tmp_path / "outbox.sqlite")
    box.execute("CREATE TABLE registrations (id INTEGER PRIMARY KEY AUTOINCREMENT, commitment TEXT, created_at REAL)")
    for i in range(n):
        t = start + 1.3 * i
        log.execute("INSERT INTO connections VALUES (?, ?)", (int(t), ips[i]))
        box.execute("INSERT INTO registrations (commitment, created_at) VALUES (?, ?)", (str(commitments[f"c{i}"]), t + 0.01))
    log.commit()
    box.commit()
    log.close()
    box.close()
    found_ips, found_ids = scan([tmp_path], dict(commitments))
    truth = {f"c{i}": ips[i] for i in range(n)}
    guesses = strategies(found_ips, found_ids, list(truth), rng)
    hits, how = best_single(guesses, truth)
    assert hits == n, how
    # By rank (AUTOINCREMENT ids against first appearance) and by nearest time (most of them).
    assert best_single({k: v for k, v in guesses.items() if k.startswith("rank")}, truth)[0] == n
    assert best_single({k: v for k, v in guesses.items() if k.startswith("time")}, truth)[0] >= n // 2


def test_kendall_tau_finds_a_nearly_ordered_table() -> None:
    assert kendall_tau(list(range(12))) == 1.0 and kendall_tau(list(range(12))[::-1]) == -1.0
    nearly = list(range(12))
    nearly[4], nearly[5] = nearly[5], nearly[4]  # 11 of 12 in place
    assert kendall_tau(nearly) > 0.9


def test_a_count_beside_an_address_is_found(tmp_path: Path) -> None:
    """The layout with a request count per address and hour: the count (3 sends here, 1 + 3
    pickups and acknowledgements there) is what names a conversation; rule 3 finds it."""
    log = sqlite3.connect(tmp_path / "access.log.sqlite")
    log.execute("CREATE TABLE connections (hour INTEGER, ip TEXT, requests INTEGER, PRIMARY KEY (hour, ip)) WITHOUT ROWID")
    log.executemany("INSERT INTO connections VALUES (?, ?, ?)", [(1_760_000_400, "10.0.0.7", 3), (1_760_000_400, "10.0.0.9", 4)])
    log.commit()
    log.close()
    found = beside_addresses([tmp_path])
    assert sorted(v for _, k, v in found if k == "requests") == [3, 4]
    assert [k for _, k, _ in found if k == "hour"] == []  # whole hours are allowed


def test_a_time_finer_than_the_hour_beside_an_address_is_found(tmp_path: Path) -> None:
    """A connection log to the second (what the hour buckets replaced), IPv6 included."""
    log = sqlite3.connect(tmp_path / "access.log.sqlite")
    log.execute("CREATE TABLE connections (at INTEGER, ip TEXT, PRIMARY KEY (at, ip)) WITHOUT ROWID")
    log.executemany("INSERT INTO connections VALUES (?, ?)", [(1_760_000_401, "10.0.0.7"), (1_760_000_402, "2001:db8::7")])
    log.commit()
    log.close()
    assert sorted(v for _, k, v in beside_addresses([tmp_path]) if k == "at") == [1_760_000_401, 1_760_000_402]


# ------------------------------------------------------------------------------ the real system

N_CLIENTS = 12
N_CONVERSATIONS = 6
# Chance bounds. A strategy that matches targets to IP addresses without information is a
# random assignment among the (at least 12) addresses of the hour: the number it gets
# right is about Poisson(1) (a random permutation's fixed points) or Binomial(12, 1/12)
# (independent guesses); P(>= 9 of 12) is about 1e-6 for either. The attacker tries fewer
# than 300 strategies (the test asserts it), so by the union bound the test fails by bad
# luck with probability < 3e-4. 6 of 6 nullifiers: at most 12**-6 * 720 per strategy
# (< 3e-4, all strategies together). A conversation needs its sender and its recipient
# right (about 1/12 each): P(>= 4 of 6 pairs) < 15 * 144**-4 * 300 < 1e-5.
# A run that straddles the turn of an hour (about 30 s in 3600) splits the clients into two
# hours, which helps the attacker by a factor of about two at most: still far below.
MAX_REGISTRATIONS_LINKED = 8
MAX_NULLIFIERS_LINKED = 5
MAX_CONVERSATIONS_LINKED = 3
MAX_STRATEGIES = 300


def _merkle_proof(cls: Any, data: dict[str, Any]) -> Any:
    parse = getattr(cls, "from_dict", None) or cls.from_json  # named from_json in earlier versions
    return parse(data)


def _client(base: str, ip: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=60.0, transport=httpx.HTTPTransport(local_address=ip))


def test_linking_attack_on_data_at_rest(tmp_path: Path) -> None:
    from eth_account import Account

    from registry.client.api import SendSlots, build_send_authorization, registry_of
    from registry.relay.evidence import load_relay_key
    from registry.service.settings import Settings
    from registry.relay.app import RelaySettings
    from tests.registry.relay.support import running_relay

    try:
        from tests.support.registry import running_registry
    except ImportError:  # the layout of earlier versions (to run this attack against them)
        from tests.registry.http_support import running_registry  # type: ignore[no-redef]
    from zk.identity import Identity
    from zk.tree import MerkleProof

    rng = random.Random(secrets.randbits(64))
    reg_dir, relay_dir = tmp_path / "registry", tmp_path / "relay"
    relay_key = Account.from_key(load_relay_key(relay_dir)).address
    # Addresses in an order unrelated to the clients' order (so the attacker cannot use it).
    ips = [f"127.0.0.{10 + k}" for k in rng.sample(range(200), N_CLIENTS)]
    people = [Identity(f"linking-{secrets.token_hex(8)}") for _ in range(N_CLIENTS)]
    overrides: dict[str, Any] = {"relay_keys": [relay_key], "batch_interval": 0.2}
    if "batch_min_size" in Settings.model_fields:  # a k-anonymity floor: one batch of all
        overrides.update(batch_min_size=N_CLIENTS, batch_max_wait=300.0)
    nullifier_ip: dict[str, str] = {}
    conversation_ips: dict[str, tuple[str, str]] = {}
    identifiers: dict[str, bytes | int] = {}
    with running_registry(reg_dir, **overrides) as reg:
        relay_overrides: dict[str, Any] = {"evidence_url": reg.url}
        if "evidence_batch_min" in RelaySettings.__dataclass_fields__:  # shuffled batches of evidence
            relay_overrides.update(evidence_batch_min=3 * N_CONVERSATIONS, evidence_batch_max_wait=30.0)
        with running_relay(relay_dir, reg.anvil.rpc_url, reg.manifest, **relay_overrides) as (relay_url, relay, _app):
            # 1. Registrations, one client after the other, about a second apart.
            for person, ip in zip(people, ips):
                with _client(reg.url, ip) as c:
                    r = c.post("/v1/groups/0/members", json={"commitments": [str(person.commitment)]})
                    assert r.status_code == 202, r.text
                time.sleep(1.05)
            reg.wait_included(0, [p.commitment for p in people], timeout=120)
            # 2. Conversations: a random sender to a random recipient, one after the other.
            order = rng.sample(range(N_CLIENTS), N_CLIENTS)
            pairs = list(zip(order[:N_CONVERSATIONS], order[N_CONVERSATIONS:]))
            boxes = {r: (secrets.token_bytes(32), secrets.token_bytes(32)) for _, r in pairs}
            for k, (s, r) in enumerate(pairs):
                blob = secrets.token_bytes(200)
                mailbox, capability = boxes[r]
                with _client(reg.url, ips[s]) as c:
                    info = c.get("/v1/groups/0").json()
                    merkle = _merkle_proof(MerkleProof, c.get(f"/v1/groups/0/proofs/{people[s].commitment}").json()["merkle_proof"])
                slots = SendSlots(tmp_path / f"slots-{s}.sqlite")
                proof, digest = build_send_authorization(
                    people[s], merkle, 0, blob, time.time(), slots, registry=registry_of(info),
                    epoch_length=info["epoch_length"], message_limit=info["message_limit"],
                )
                slots.close()
                body = {
                    "mailbox": mailbox.hex(), "pickup_hash": hashlib.sha256(capability).hexdigest(),
                    "blob": base64.b64encode(blob).decode(), "group_id": 0, "proof": proof.to_dict(),
                }
                with _client(relay_url, ips[s]) as c:
                    r_ = c.post("/v1/blobs", json=body)
                    assert r_.status_code == 201, r_.text
                nullifier_ip[f"n{k}"] = ips[s]
                identifiers[f"n{k}"] = int(proof.nullifier)
                conversation_ips[f"d{k}"] = (ips[s], ips[r])
                identifiers[f"d{k}"] = digest
                time.sleep(1.05)
            # 3. Pickups (and acknowledgements, which delete the blobs), in another order.
            for r in rng.sample([r for _, r in pairs], N_CONVERSATIONS):
                mailbox, capability = boxes[r]
                with _client(relay_url, ips[r]) as c:
                    headers = {"X-Pickup-Capability": capability.hex()}
                    got = c.get(f"/v1/mailboxes/{mailbox.hex()}", headers=headers)
                    assert got.status_code == 200, got.text
                    for b in got.json()["blobs"]:
                        assert c.post(f"/v1/blobs/{b['id']}/ack", headers=headers).status_code == 200
                time.sleep(1.05)
            wait_until(lambda: relay.evidence is None or relay.evidence.pending() == 0, 90, "evidence to reach the log",
                       interval=0.2)
    # Everything is stopped: the attacker takes the disks.
    registrations = {f"c{i}": ips[i] for i in range(N_CLIENTS)}
    identifiers.update({f"c{i}": p.commitment for i, p in enumerate(people)})
    found_ips, found_ids = scan([reg_dir, relay_dir], identifiers)
    assert {e.value for e in found_ips} >= set(ips), "the connection logs must see the clients' own addresses"

    # Generic checks of the rules themselves (docs/privacy.md "The rule"), which hold even
    # while no IP source is fine enough to join with: a store that regresses must fail here,
    # not only once someone also adds a fine-grained log of addresses.
    # Rule 1: no time finer than the hour beside any identifier, in any table or file.
    fine = sorted({(e.source, e.value) for e in found_ids if e.time is not None and e.time % 3600})
    assert not fine, f"identifiers beside times finer than the hour: {fine[:5]}"
    # Rule 2: no arrival-ordered id: in no table do the rowids of the commitments follow
    # the order in which the clients registered, nor nearly (Kendall's tau against the
    # arrival order at most 0.9 either way: a random order of 12 has tau's standard
    # deviation 0.22, so |tau| > 0.9 by chance is about 5e-5 per table; one swap of
    # neighbours in an arrival-ordered table still has tau 0.97).
    arrival = list(registrations)
    order_of: dict[str, dict[str, float]] = defaultdict(dict)
    for e in found_ids:
        if e.value in registrations and e.time is None:
            order_of[e.source].setdefault(e.value, e.order)
    for source, orders in order_of.items():
        if len(orders) == N_CLIENTS and len(set(orders.values())) == N_CLIENTS:
            tau = kendall_tau([orders[name] for name in arrival])
            assert abs(tau) <= 0.9, f"{source} keeps the commitments in (or near) arrival order: tau {tau:.2f}"

    # Rule 3: the connection log keeps an address and its hour, nothing beside them.
    extras = beside_addresses([reg_dir, relay_dir])
    assert not extras, f"values beside IP addresses (a per-address fingerprint): {extras[:5]}"

    tried = strategies(found_ips, found_ids, list(registrations), rng)
    assert 0 < len(tried) < MAX_STRATEGIES
    reg_hits, reg_how = best_single(tried, registrations)
    null_hits, null_how = best_single(strategies(found_ips, found_ids, list(nullifier_ip), rng), nullifier_ip)
    conv_hits, conv_how = best_pairs(strategies(found_ips, found_ids, list(conversation_ips), rng), conversation_ips)
    report = (
        f"linking attack: registrations {reg_hits}/{N_CLIENTS} ({reg_how}); "
        f"authorizations {null_hits}/{N_CONVERSATIONS} ({null_how}); "
        f"conversations {conv_hits}/{N_CONVERSATIONS} ({conv_how})"
    )
    print(report)
    if os.environ.get("ZKID_LINKING_REPORT"):
        Path(os.environ["ZKID_LINKING_REPORT"]).write_text(report + "\n")
    assert reg_hits <= MAX_REGISTRATIONS_LINKED, report
    assert null_hits <= MAX_NULLIFIERS_LINKED, report
    assert conv_hits <= MAX_CONVERSATIONS_LINKED, report
