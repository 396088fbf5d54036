"""The demo's topology (docs/regions.md): regional registries, each on its own Anvil chain
with its own data directory, and relays in other regions that trust all of them.

Each registry is a region: its ledger (a throw-away Anvil with its own chain id), its
deployment manifest naming the region, its database, evidence log and anchorer, all under
``<data dir>/<region>/``; nothing of one region is written under another's directory. Each
relay has its own data directory and a trust list (``trust-list.toml``, the format of
``zkid relay --trust-list``) naming every registry, with how this relay authorizes that
registry's senders: ``local`` (verify against the registry's ledger, then claim the
nullifier at the registry) or ``registry`` (ask the registry to authorize).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.demo.servers import interrupt_deferred, registry_service, serve

#: The regional registries: region tag and the chain id of its ledger.
REGISTRIES: tuple[tuple[str, int], ...] = (("eu-central", 49001), ("gcc", 97101))
#: The relays: region, and per registry how the relay authorizes its senders. Every
#: registry has a relay of each kind, and ap-southeast checks every region locally.
RELAYS: tuple[tuple[str, dict[str, str]], ...] = (
    ("us-east", {"eu-central": "registry", "gcc": "local"}),
    ("eu-west", {"eu-central": "local", "gcc": "registry"}),
    ("ap-southeast", {"eu-central": "local", "gcc": "local"}),
)
MESSAGE_LIMIT = 3  # send slots per identity per epoch in the demo groups: small, to show the limit
SEND_GROUP = 0  # each registry's send group (its admission group is another)

Say = Callable[[str, str], None]


@dataclass
class Region:
    """One regional registry as the demo runs it, and its clients."""

    name: str
    chain_id: int
    root: Path  # <data dir>/<region>: everything of this registry and nothing else
    rpc_url: str
    w3: Any
    manifest: Any
    service: Any
    url: str
    http: Any  # a RegistryClient of this registry
    identities: list[Any] = field(default_factory=list)
    merkle: dict[int, Any] = field(default_factory=dict)
    epoch_length: int = 600
    message_limit: int = MESSAGE_LIMIT

    @property
    def ref(self) -> Any:
        """The registry's global reference, which every scope of its groups names (LZE2)."""
        from zk.relay_scope import RegistryRef

        return RegistryRef(self.manifest.chain_id, self.manifest.address("ZkIdRegistry"))

    def merkle_proof(self, client: int) -> Any:
        """The client's Merkle proof in the send group (fetched once)."""
        if client not in self.merkle:
            self.merkle[client] = self.http.merkle_proof(SEND_GROUP, self.identities[client].commitment)
        return self.merkle[client]


@dataclass
class Relay:
    region: str
    auth: dict[str, str]  # registry region -> "local" | "registry"
    url: str
    http: Any  # httpx.Client, used through the client SDK (registry/client/messaging.py)
    listed: list[dict[str, Any]] = field(default_factory=list)  # its GET /v1/registries


def relay_dir(root: Path, region: str) -> Path:
    return root / f"relay-{region}"


def relay_addresses(root: Path) -> list[str]:
    """The relays' signing addresses; each relay creates its key in its data directory, and
    every registry must list them (relay_keys) to take their claims and evidence records."""
    from eth_account import Account

    from registry.relay.evidence import load_relay_key

    return [Account.from_key(load_relay_key(relay_dir(root, region))).address for region, _ in RELAYS]


def start_region(stack: contextlib.ExitStack, root: Path, name: str, chain_id: int, relay_keys: list[str], say: Say) -> Region:
    """Anvil on its own chain, the contracts, the registry service and its HTTP API."""
    from registry.client import RegistryClient
    from registry.ledger.accounts import anvil_dev_account
    from registry.ledger.anvil import AnvilProcess
    from registry.ledger.deploy import deploy_contracts, save_manifest
    from registry.ledger.tx import Transactor
    from registry.service.settings import load_settings
    from registry.web.app import create_app

    home = root / name
    reg_dir = home / "registry"
    reg_dir.mkdir(parents=True, exist_ok=True)
    with interrupt_deferred():  # a Ctrl-C while Anvil starts must not orphan it
        args = ["--chain-id", str(chain_id), "--gas-limit", "300000000"]
        anvil = stack.enter_context(AnvilProcess(args, log_file=home / "anvil.log"))
    manifest = deploy_contracts(Transactor(anvil.w3, anvil_dev_account(0), poll_interval=0.02), region=name)
    save_manifest(reg_dir, manifest)
    say("ledger", f"{name}: Anvil chain {manifest.chain_id} on {anvil.rpc_url}; ZkIdRegistry {manifest.address('ZkIdRegistry')}")
    settings = load_settings(
        None,
        data_dir=reg_dir,
        relay_keys=relay_keys,
        rpc_url=anvil.rpc_url,
        region=name,
        confirmations=1,
        poll_interval=0.1,
        batch_interval=0.3,
        batch_min_size=1,  # the demo registers its few clients at once: no floor to wait for
        message_limit=MESSAGE_LIMIT,
        # Anchor once records waited a moment, with no rate limit: the demo is short.
        anchor_interval=0.0,
        anchor_min_growth=1000,
        anchor_max_delay=0.5,
    )
    service = stack.enter_context(registry_service(settings))
    url = stack.enter_context(serve(create_app(service, settings)))
    http = stack.enter_context(RegistryClient(url, timeout=60.0))
    say(name, f"registry on {url}: data in {reg_dir}, its own ledger, evidence log and anchorer")
    return Region(name, manifest.chain_id, home, anvil.rpc_url, anvil.w3, manifest, service, url, http)


def trust_entries(regions: list[Region], auth: dict[str, str]) -> list[Any]:
    """The trust list of a relay that authorizes each registry's senders as ``auth`` says."""
    from registry.ledger.accounts import anvil_dev_account
    from registry.relay.trust_list import TrustedRegistry

    operator = anvil_dev_account(0).address  # the deployer administers the send group
    return [
        TrustedRegistry(
            region=r.name,
            ref=r.ref,
            registry_url=r.url,
            rpc_url=r.rpc_url,
            auth="local" if auth[r.name] == "local" else "registry",
            send_groups=(SEND_GROUP,),
            operator=operator,
            evidence=True,
            evidence_log_key=None if r.service.evidence is None else r.service.evidence.verifier.vkey(),
            anchor_contract=r.manifest.address("EvidenceAnchor"),
        )
        for r in regions
    ]


def start_relay(stack: contextlib.ExitStack, root: Path, region: str, auth: dict[str, str], regions: list[Region], say: Say) -> Relay:
    """A relay trusting every registry; its trust list is written and read back as
    ``zkid relay --trust-list`` reads it."""
    import httpx

    from registry.client.messaging import relay_registries
    from registry.relay.app import RelaySettings, create_relay_app
    from registry.relay.trust_list import load_trust_list, render_trust_list

    data = relay_dir(root, region)
    data.mkdir(parents=True, exist_ok=True)
    trust_file = data / "trust-list.toml"
    trust_file.write_text(render_trust_list(trust_entries(regions, auth)), encoding="utf-8")
    settings = RelaySettings(
        data_dir=data,
        region=region,
        trust_list=load_trust_list(trust_file),
        message_limit=MESSAGE_LIMIT,
        rate_limit=10_000,
        evidence_interval=0.2,
        evidence_batch_max_wait=1.0,  # records still go in shuffled batches; the demo is short
    )
    url = stack.enter_context(serve(create_relay_app(settings)))
    client = stack.enter_context(httpx.Client(base_url=url, timeout=60.0))
    listed = relay_registries(client)  # what the relay says it trusts (public facts only)
    how = ", ".join(f"{name}: {'asks the registry' if mode == 'registry' else 'checks locally, claims at the registry'}" for name, mode in auth.items())
    say(region, f"relay on {url}, trusts {len(listed)} registries ({how}); evidence to each sender's home log")
    return Relay(region, auth, url, client, listed)
