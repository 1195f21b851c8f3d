"""The transport floor: a bare sync gRPC server over mutual TLS that answers ModelInfer at once.

It parses the same request and returns a canned response of the model's output
size, so `echo p50` is what one KServe v2 call over mTLS costs on this machine
with no inference and no server logic: the least any server's overhead can be.
Its throwaway CA exists only for the benchmark.
"""

from __future__ import annotations

import datetime
import multiprocessing
from concurrent import futures
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inference import grpc_predict_v2_pb2 as pb

SERVER_NAME = "echo.bench.local"


@dataclass(frozen=True)
class Pki:
    ca_pem: bytes
    server: tuple[bytes, bytes]  # (key, cert)
    client: tuple[bytes, bytes]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki() -> Pki:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench echo CA")])

    def build(subject: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca = (
        build(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)

    return Pki(ca.public_bytes(serialization.Encoding.PEM), leaf(SERVER_NAME), leaf("client"))


def _handler(output_bytes: int) -> grpc.GenericRpcHandler:
    """ModelInfer only: parses the request as any server must, answers a canned response
    (or NOT_FOUND for the model "missing", so clients' error paths can be tested)."""
    response = pb.ModelInferResponse(model_name="echo")
    response.outputs.add(name="out", datatype="FP32", shape=[1, output_bytes // 4])
    response.raw_output_contents.append(bytes(output_bytes))

    def infer(
        request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        if request.model_name == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "model missing is not served")
        return response

    method = grpc.unary_unary_rpc_method_handler(
        infer,
        request_deserializer=pb.ModelInferRequest.FromString,
        response_serializer=pb.ModelInferResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": method}
    )


def _serve(pki: Pki | None, output_bytes: int, ports: multiprocessing.Queue[int]) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    server.add_generic_rpc_handlers((_handler(output_bytes),))
    if pki is None:
        ports.put(server.add_insecure_port("127.0.0.1:0"))
    else:
        creds = grpc.ssl_server_credentials(
            [pki.server], root_certificates=pki.ca_pem, require_client_auth=True
        )
        ports.put(server.add_secure_port("127.0.0.1:0", creds))
    server.start()
    server.wait_for_termination()


def start(
    pki: Pki | None, output_bytes: int = 4004
) -> tuple[multiprocessing.process.BaseProcess, int]:
    """An echo server in its own process (its own interpreter lock); returns (process, port).
    Without a `pki` it serves plaintext, as the bench's peers do."""
    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue[int] = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(pki, output_bytes, ports), daemon=True)
    proc.start()
    return proc, ports.get(timeout=120)
