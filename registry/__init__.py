"""letro-zkid registry: ledger access, chain index, HTTP service and the CLI."""

# First: zk installs the guard that undoes py_ecc's raising of the recursion limit
# (zk/__init__.py), before any registry module imports eth_account (which imports py_ecc).
import zk  # noqa: E402,F401
