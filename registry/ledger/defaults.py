"""Defaults of the ledger layer that the CLI shows in ``--help``, in a module that imports
nothing (web3 and eth-account take most of a second to import; ``zkid --help`` must not
pay for them). ``anvil``, ``accounts`` and ``registry_contract`` re-export them."""

from __future__ import annotations

#: Port of the local Anvil ledger on 127.0.0.1.
DEFAULT_PORT = 8545
#: Chain id of a new local ledger (Anvil's own default); ``--chain-id`` picks another, e.g.
#: for a second region's ledger on the same machine (docs/regions.md).
DEFAULT_CHAIN_ID = 31337
#: Seconds between the blocks ``zkid up`` / ``zkid ledger up`` mine on an idle local ledger.
DEFAULT_BLOCK_TIME = 5
#: Environment variable holding the passphrase of an encrypted keystore.
PASSWORD_ENV = "ZKID_KEYSTORE_PASSWORD"
#: Seconds a superseded root of a new group stays valid (``ZkIdRegistry``'s default).
DEFAULT_ROOT_WINDOW = 3600
