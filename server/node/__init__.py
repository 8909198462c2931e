"""A node's state on disk: directory, config, TLS identity, ledger, audit log, epochs, caches."""
