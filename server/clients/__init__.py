"""The proposer's side over gRPC: a channel to a pinned peer, the check and the mutual check."""
