"""protoc plugin writing typed .pyi stubs for gRPC services (mypy-protobuf)."""

from mypy_protobuf.main import grpc

if __name__ == "__main__":
    grpc()
