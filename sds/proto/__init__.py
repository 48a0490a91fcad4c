"""Generated protobuf modules (python -m sds.proto.build regenerates them)."""
