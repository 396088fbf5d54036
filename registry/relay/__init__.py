"""The reference relay: stores encrypted blobs under mailbox tags for anonymous senders
who present a send authorization (docs/relay.md, docs/authorization.md)."""
