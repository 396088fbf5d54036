"""Client SDK of a ZK-ID registry and its relays (registry/client/api.py, with its one HTTP
layer in registry/client/_http.py). Importing it loads neither web3 nor eth-account."""

from registry.client.api import *  # noqa: F403 - the SDK's public names: api.py's __all__
from registry.client.api import __all__ as __all__
