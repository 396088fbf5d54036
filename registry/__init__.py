"""letro-zkid registry: ledger access, chain index, HTTP service and the CLI."""

# First: zk imports py_ecc and restores the recursion limit it raises (zk/__init__.py),
# before any registry module imports eth_account (which imports py_ecc).
import zk  # noqa: E402,F401
