"""A responder's committed snapshot: Merkle tree, Golomb-coded blocks, building and reading it."""
