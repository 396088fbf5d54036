"""Signing accounts: an encrypted keystore for real networks, Anvil's dev account locally.

Keystores use the Web3 Secret Storage format (eth-account's ``Account.encrypt`` /
``Account.decrypt``, https://ethereum.org/en/developers/docs/data-structures-and-encoding/web3-secret-storage/).
A raw private key is never accepted from the command line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from registry.ledger.errors import DeploymentError, unreachable
from zk import strict_json

from registry.ledger.defaults import PASSWORD_ENV as PASSWORD_ENV  # noqa: E402 - re-exported

# Anvil's documented default: accounts derived from this public test mnemonic at
# m/44'/60'/0'/0/i. Worthless outside a development chain.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


def anvil_dev_account(index: int = 0) -> LocalAccount:
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return account


def is_anvil(w3: Web3) -> bool:
    try:
        return str(w3.client_version).lower().startswith("anvil/")
    except Exception as exc:
        raise unreachable(getattr(w3.provider, "endpoint_uri", "?"), exc) from exc


def load_keystore(path: Path | str, password: str) -> LocalAccount:
    """Decrypt an eth-account keyfile; clear ``DeploymentError`` on any failure."""
    path = Path(path)
    try:
        # Strictly (zk/strict_json.py): duplicate keys, deep nesting and NaN are refused.
        keyfile = strict_json.loads(path.read_bytes())
    except OSError as exc:
        raise DeploymentError(f"cannot read keystore {path}: {exc.strerror or type(exc).__name__}") from None
    except strict_json.JsonInputError as exc:
        raise DeploymentError(f"keystore {path} is not acceptable JSON ({exc.code})") from None
    if not isinstance(keyfile, dict):
        raise DeploymentError(f"keystore {path} is not in the Web3 Secret Storage format")
    try:
        key = Account.decrypt(keyfile, password)
    except (KeyError, TypeError, AttributeError, NotImplementedError):
        raise DeploymentError(f"keystore {path} is not in the Web3 Secret Storage format") from None
    except ValueError:
        raise DeploymentError(f"cannot decrypt keystore {path}: wrong passphrase or corrupt file") from None
    account: LocalAccount = Account.from_key(key)
    return account


def write_keystore(path: Path | str, account: LocalAccount, password: str, iterations: int | None = None) -> Path:
    """Encrypt ``account`` into ``path`` (mode 0600)."""
    path = Path(path)
    keyfile = Account.encrypt(account.key, password, iterations=iterations)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keyfile, f)
    return path


def choose_signer(w3: Web3, keystore: Path | str | None, password: str | None) -> LocalAccount:
    """The keystore's account if one is given; else Anvil's first dev account, on Anvil only."""
    if keystore is not None:
        if password is None:
            raise DeploymentError(f"a passphrase is needed for {keystore} (set {PASSWORD_ENV})")
        return load_keystore(keystore, password)
    if not is_anvil(w3):
        raise DeploymentError("this ledger is not Anvil: sign with an encrypted keystore (--keystore FILE)")
    account = anvil_dev_account(0)
    accounts = [a.lower() for a in w3.eth.accounts]
    if account.address.lower() not in accounts:
        raise DeploymentError("this Anvil node does not use the default dev accounts: pass --keystore")
    return account
