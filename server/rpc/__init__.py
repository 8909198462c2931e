"""The wire: generated gRPC code (``rpc/hexpsi/v1``, do not edit), conversions and statuses.

``python -m hexpsi.server.rpc.generate`` regenerates the code from ``proto/``.
"""
