"""letro-zkid cryptography: Semaphore v4-compatible ZK identities, groups and proofs.

Pure computation: nothing in this package touches the network, and the only files it
reads are the pinned ceremony artifacts. Each module implements one concept and cites
the specification or reference implementation it follows.
"""
