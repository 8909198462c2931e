"""Generated gRPC/protobuf code for proto/hexpsi/v1 (python -m hexpsi.server.rpc.generate); do not edit."""
