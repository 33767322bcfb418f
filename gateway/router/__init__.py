"""The Router service: servicer and protobuf <-> domain conversion."""
