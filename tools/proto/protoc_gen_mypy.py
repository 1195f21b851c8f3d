"""protoc plugin writing typed .pyi stubs for messages (mypy-protobuf)."""

from mypy_protobuf.main import main

if __name__ == "__main__":
    main()
