"""Generated gRPC/protobuf code for proto/hexpsi/v1 (python -m server.protogen); do not edit."""
