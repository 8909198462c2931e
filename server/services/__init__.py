"""The gRPC services a node serves, and the server that runs them."""
