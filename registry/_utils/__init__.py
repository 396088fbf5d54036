"""Internals shared by the registry's packages (as web3.py's ``_utils``): no public API."""
