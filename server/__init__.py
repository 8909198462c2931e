"""hexpsi's adapters: gRPC peers, node state on disk, and the ``hexpsi`` CLI.

Everything the protocol decides lives in ``protocol``; this package moves its
messages over gRPC and its records to disk.
"""
