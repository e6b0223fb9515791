"""The Open Inference Protocol V2 gRPC definition and the message module generated from it."""
