"""letro-zkid registry: ledger access, chain index, HTTP service and the CLI."""
