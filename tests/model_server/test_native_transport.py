"""The native data plane's HTTP/2 transport, against what gRPC clients never send.

A raw HTTP/2 peer (the `h2` library) over the same real mutual TLS a gRPC client
uses, on loopback, against the real C++ child: malformed gRPC framing, headers
and timeouts, oversized messages, compression, protocols other than h2. Each
bad request gets a precise status and leaves the connection (or at least the
server) serving. gRPC-client behaviour is covered by the serving suites.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import numpy as np
import pytest

from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc
from services.attest import mtls
from services.model_server import dataplane
from services.model_server.server import _peer_policy
from tests.model_server.native_harness import (
    MODEL,
    SERVER_NAME,
    Pki,
    Reported,
    launch,
    make_pki,
    model,
    start_message,
    stub_for,
)

SERVICE = "/inference.GRPCInferenceService/"


@dataclass
class Outcome:
    """What came back on one stream."""

    headers: dict[str, str] = field(default_factory=dict)  # response headers and trailers
    data: bytes = b""
    reset: int | None = None  # RST_STREAM error code

    @property
    def grpc_status(self) -> int | None:
        value = self.headers.get("grpc-status")
        return None if value is None else int(value)

    @property
    def grpc_message(self) -> str:
        return urllib.parse.unquote(self.headers.get("grpc-message", ""))


class RawH2:
    """An HTTP/2 client speaking to the data plane over mTLS, frame by frame."""

    def __init__(self, port: int, pki: Pki, tmp: Path, alpn: tuple[str, ...] = ("h2",)) -> None:
        (tmp / "client.pem").write_bytes(pki.client.cert_pem)
        (tmp / "client.key").write_bytes(pki.client.key_pem)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.load_verify_locations(cadata=pki.ca_pem.decode())
        tls.load_cert_chain(tmp / "client.pem", tmp / "client.key")
        tls.set_alpn_protocols(list(alpn))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = tls.wrap_socket(raw, server_hostname=SERVER_NAME)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self._flush()
        self._done: dict[int, Outcome] = {}
        self._open: dict[int, Outcome] = {}
        self._settled = False
        while not self._settled:  # the server's SETTINGS: its flow-control windows
            self._receive()

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, "the server closed the connection"
        for event in self.conn.receive_data(chunk):
            self._on(event)
        self._flush()

    def _flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def send(
        self,
        path: str,
        body: bytes | None,
        extra: tuple[tuple[str, str], ...] = (),
        content_type: str = "application/grpc",
        end: bool = True,
        frame: int = 0,
        pad: int = 0,
    ) -> int:
        """Opens a call; its body goes in DATA frames of `frame` bytes (0: as large as the
        server allows), each padded with `pad` bytes."""
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":path", path),
            (":authority", SERVER_NAME),
            ("content-type", content_type),
            ("te", "trailers"),
            *extra,
        ]
        self.conn.send_headers(stream, headers, end_stream=body is None)
        if body is not None:
            size = (frame or self.conn.max_outbound_frame_size) - (pad + 1 if pad else 0)
            chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
            for i, chunk in enumerate(chunks):
                last = end and i == len(chunks) - 1
                self.conn.send_data(stream, chunk, end_stream=last, pad_length=pad or None)
        self._flush()
        self._open[stream] = Outcome()
        return stream

    def outcome(self, stream: int, timeout: float = 10.0) -> Outcome:
        """Reads until `stream` ends (END_STREAM or RST_STREAM)."""
        until = time.monotonic() + timeout
        while stream not in self._done:
            assert time.monotonic() < until, f"stream {stream} never ended"
            self._receive()
        return self._done[stream]

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            self._settled = True
        stream = getattr(event, "stream_id", 0)
        got = self._open.get(stream)
        if got is None:
            return
        if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            got.headers.update((str(k), str(v)) for k, v in event.headers)
        elif isinstance(event, h2.events.DataReceived):
            got.data += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, stream)
        elif isinstance(event, h2.events.StreamReset):
            got.reset = event.error_code
            self._done[stream] = self._open.pop(stream)
        elif isinstance(event, h2.events.StreamEnded):
            self._done[stream] = self._open.pop(stream)

    def close(self) -> None:
        self.sock.close()


def framed(message: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">BI", int(compressed), len(message)) + message


def _live_request() -> bytes:
    return framed(pb.ServerLiveRequest().SerializeToString())


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def plane(pki: Pki) -> Iterator[dataplane.NativeDataPlane]:
    running = launch(start_message(pki, _peer_policy(mtls.RevocationList())))
    yield running
    running.stop()


@pytest.fixture
def h2c(plane: dataplane.NativeDataPlane, pki: Pki, tmp_path: Path) -> Iterator[RawH2]:
    client = RawH2(plane.port, pki, tmp_path)
    yield client
    client.close()


def _still_serves(h2c: RawH2) -> None:
    got = h2c.outcome(h2c.send(SERVICE + "ServerLive", _live_request()))
    assert got.grpc_status == 0
    assert pb.ServerLiveResponse.FromString(got.data[5:]).live


def test_a_well_formed_call_gets_grpc_framing_and_trailers(h2c: RawH2) -> None:
    got = h2c.outcome(h2c.send(SERVICE + "ServerLive", _live_request()))
    assert got.headers[":status"] == "200"
    assert got.headers["content-type"] == "application/grpc"
    assert got.grpc_status == 0
    flag, length = struct.unpack(">BI", got.data[:5])
    assert (flag, length) == (0, len(got.data) - 5)
    assert pb.ServerLiveResponse.FromString(got.data[5:]).live


def test_not_grpc_gets_http_415(h2c: RawH2) -> None:
    got = h2c.outcome(h2c.send(SERVICE + "ServerLive", b"{}", content_type="application/json"))
    assert got.headers[":status"] == "415"
    _still_serves(h2c)


@pytest.mark.parametrize("path", [SERVICE + "Explain", "/other.Service/ModelInfer", "/"])
def test_unknown_method_is_unimplemented(h2c: RawH2, path: str) -> None:
    got = h2c.outcome(h2c.send(path, _live_request()))
    assert got.grpc_status == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert "KServe v2" in got.grpc_message or "not implemented" in got.grpc_message
    _still_serves(h2c)


BAD_FRAMING = [
    ("no-message", None, (), grpc.StatusCode.INTERNAL, "carried no message"),
    ("truncated", struct.pack(">BI", 0, 100) + b"x" * 10, (), grpc.StatusCode.INTERNAL, "ended inside its message"),
    ("two-messages", _live_request() * 2, (), grpc.StatusCode.INTERNAL, "exactly one request message"),
    ("compressed-flag", framed(b"\x00", compressed=True), (), grpc.StatusCode.UNIMPLEMENTED, "compressed request messages are not supported"),
    ("gzip-encoding", _live_request(), (("grpc-encoding", "gzip"),), grpc.StatusCode.UNIMPLEMENTED, "grpc-encoding 'gzip' is not supported"),
    ("bad-timeout", _live_request(), (("grpc-timeout", "soon"),), grpc.StatusCode.INTERNAL, "malformed grpc-timeout 'soon'"),
    ("not-protobuf", framed(b"\xff\xff\xff"), (), grpc.StatusCode.INVALID_ARGUMENT, "not a valid inference.ServerLiveRequest"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "extra", "code", "message"),
    [b[1:] for b in BAD_FRAMING],
    ids=[b[0] for b in BAD_FRAMING],
)
def test_bad_framing_gets_a_precise_status(
    h2c: RawH2,
    body: bytes | None,
    extra: tuple[tuple[str, str], ...],
    code: grpc.StatusCode,
    message: str,
) -> None:
    got = h2c.outcome(h2c.send(SERVICE + "ServerLive", body, extra))
    assert got.grpc_status == code.value[0]
    assert message in got.grpc_message
    _still_serves(h2c)


def test_undecodable_inference_request_is_invalid_argument(h2c: RawH2) -> None:
    got = h2c.outcome(h2c.send(SERVICE + "ModelInfer", framed(b"\x3a\xff\xff\x01")))
    assert got.grpc_status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "not a valid inference.ModelInferRequest" in got.grpc_message


def test_oversized_message_is_refused_from_its_prefix(h2c: RawH2) -> None:
    """The prefix announces 1 GiB: refused before a byte of it is buffered, then the
    client is asked (RST_STREAM NO_ERROR, after the status) to stop sending."""
    stream = h2c.send(SERVICE + "ModelInfer", struct.pack(">BI", 0, 1 << 30), end=False)
    got = h2c.outcome(stream)
    assert got.grpc_status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "over the server's limit of 16777216 bytes" in got.grpc_message
    _still_serves(h2c)


def test_oversized_header_resets_only_its_stream(h2c: RawH2) -> None:
    got = h2c.outcome(h2c.send(SERVICE + "ServerLive" + "x" * 2000, _live_request()))
    assert got.reset is not None
    assert got.grpc_status is None
    _still_serves(h2c)


def test_a_client_without_h2_is_refused_at_the_handshake(
    plane: dataplane.NativeDataPlane, pki: Pki, tmp_path: Path
) -> None:
    with pytest.raises(ssl.SSLError, match=r"NO_APPLICATION_PROTOCOL|no application protocol"):
        RawH2(plane.port, pki, tmp_path, alpn=("http/1.1",))


def test_garbage_and_silent_connections_leave_others_served(
    plane: dataplane.NativeDataPlane, pki: Pki
) -> None:
    silent = [socket.create_connection(("127.0.0.1", plane.port)) for _ in range(8)]
    garbage = socket.create_connection(("127.0.0.1", plane.port), timeout=5)
    garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
    reply = garbage.recv(4096)
    assert reply == b"" or reply[0] == 0x15, reply  # closed, or a TLS alert record
    live = stub_for(plane, pki, pki.client).ServerLive(pb.ServerLiveRequest(), timeout=5)
    assert live.live
    for s in [*silent, garbage]:
        s.close()


def test_a_client_hanging_up_mid_handshake_costs_only_its_connection(
    plane: dataplane.NativeDataPlane, pki: Pki
) -> None:
    """A client expecting another service's name aborts the handshake and hangs up;
    the server's alert then meets a closed socket (EPIPE, and SIGPIPE unless ignored)."""
    creds = grpc.ssl_channel_credentials(pki.ca_pem, pki.client.key_pem, pki.client.cert_pem)
    for _ in range(5):
        wrong = grpc.secure_channel(
            f"127.0.0.1:{plane.port}",
            creds,
            [("grpc.ssl_target_name_override", "other.s3ml.local")],
        )
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.GRPCInferenceServiceStub(wrong).ServerLive(pb.ServerLiveRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        wrong.close()
    assert plane.running()
    live = stub_for(plane, pki, pki.client).ServerLive(pb.ServerLiveRequest(), timeout=5)
    assert live.live


def _mobilenet_request(batch: int = 1) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="image", datatype="UINT8", shape=[batch, 128, 128, 3])
    request.raw_input_contents.append(np.full((batch, 128, 128, 3), 90, np.uint8).tobytes())
    return request


def test_a_tensor_may_arrive_in_one_large_data_frame(
    h2c: RawH2, plane: dataplane.NativeDataPlane, pki: Pki
) -> None:
    """The plane allows 1 MiB DATA frames (SETTINGS_MAX_FRAME_SIZE), so a client may send a
    big tensor in one frame instead of 16 KiB pieces; the answer is the same."""
    assert h2c.conn.remote_settings.max_frame_size == 1 << 20
    request = _mobilenet_request(batch=4)  # 197 KB
    body = framed(request.SerializeToString())
    assert 16384 < len(body) <= h2c.conn.max_outbound_frame_size  # one DATA frame
    got = h2c.outcome(h2c.send(SERVICE + "ModelInfer", body))
    assert got.grpc_status == 0
    expected = stub_for(plane, pki, pki.client).ModelInfer(request, timeout=10)
    answer = pb.ModelInferResponse.FromString(got.data[5:])
    assert answer.raw_output_contents == expected.raw_output_contents


def _answer(got: Outcome) -> pb.ModelInferResponse:
    assert got.grpc_status == 0, got.grpc_message
    return pb.ModelInferResponse.FromString(got.data[5:])


@pytest.mark.parametrize(("frame", "pad"), [(16384, 0), (16384, 200), (1000, 0), (4096, 7)])
def test_a_tensor_in_many_or_padded_frames_gives_the_same_answer(
    h2c: RawH2, plane: dataplane.NativeDataPlane, pki: Pki, frame: int, pad: int
) -> None:
    """A payload is decrypted straight into its message unless its frame is padded; small,
    padded and mixed frames (gRPC clients send 16 KiB ones) must all land in the right place."""
    request = _mobilenet_request(batch=2)
    got = h2c.outcome(
        h2c.send(SERVICE + "ModelInfer", framed(request.SerializeToString()), frame=frame, pad=pad)
    )
    expected = stub_for(plane, pki, pki.client).ModelInfer(request, timeout=10)
    assert _answer(got).raw_output_contents == expected.raw_output_contents


def test_a_tensor_not_at_the_end_of_its_request_is_served_from_a_copy(
    h2c: RawH2, plane: dataplane.NativeDataPlane, pki: Pki
) -> None:
    """The interpreter reads a tensor in place only where the runtime's alignment allows:
    a request ending with its tensor. Here a field follows it (protobuf takes any order),
    so the tensor is 7 bytes off: it is copied, and the answer is the same."""
    request = _mobilenet_request()
    trailing_id = b"\x1a\x05later"  # field 3 (id), 5 bytes, after raw_input_contents
    got = h2c.outcome(
        h2c.send(SERVICE + "ModelInfer", framed(request.SerializeToString() + trailing_id))
    )
    expected = stub_for(plane, pki, pki.client).ModelInfer(request, timeout=10)
    answer = _answer(got)
    assert answer.id == "later"
    assert answer.raw_output_contents == expected.raw_output_contents


def test_a_call_reset_mid_tensor_leaves_the_connection_serving(
    h2c: RawH2, plane: dataplane.NativeDataPlane, pki: Pki
) -> None:
    """The client gives up halfway through a tensor's frame (RST_STREAM): the part that
    arrived is dropped with its stream and the next call on the connection is served."""
    body = framed(_mobilenet_request(batch=4).SerializeToString())
    stream = h2c.conn.get_next_available_stream_id()
    h2c.conn.send_headers(stream, [(":method", "POST"), (":scheme", "https"), (":path", SERVICE + "ModelInfer"),
                                   (":authority", SERVER_NAME), ("content-type", "application/grpc")])  # fmt: skip
    h2c.conn.send_data(stream, body[: len(body) // 2])
    h2c.conn.reset_stream(stream)
    h2c._flush()
    request = _mobilenet_request()
    got = h2c.outcome(h2c.send(SERVICE + "ModelInfer", framed(request.SerializeToString())))
    expected = stub_for(plane, pki, pki.client).ModelInfer(request, timeout=10)
    assert _answer(got).raw_output_contents == expected.raw_output_contents
    assert plane.running()


def test_calls_multiplexed_on_one_connection_wait_for_the_interpreter(pki: Pki) -> None:
    """One interpreter, eight calls at once on one HTTP/2 connection: they queue for it
    (run by whichever thread frees it) and all get the same, right answer."""
    running = launch(start_message(pki, _peer_policy(mtls.RevocationList()), max_queue=16))
    try:
        stub = stub_for(running, pki, pki.client)
        expected = stub.ModelInfer(_mobilenet_request(), timeout=10).raw_output_contents[0]
        futures = [stub.ModelInfer.future(_mobilenet_request(), timeout=30) for _ in range(8)]
        answers = [f.result().raw_output_contents[0] for f in futures]
        assert answers == [expected] * 8
    finally:
        running.stop()


def test_a_call_queued_past_its_deadline_is_refused_by_the_server(pki: Pki) -> None:
    reported = Reported()
    running = launch(
        start_message(pki, _peer_policy(mtls.RevocationList()), max_queue=64), reported
    )
    try:
        stub = stub_for(running, pki, pki.client)
        request = _mobilenet_request(batch=4)
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(lambda _: _code_of(stub, request, 0.02), range(32)))
        assert set(outcomes) <= {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}
        until = time.monotonic() + 5
        while not any(
            c.code == "DEADLINE_EXCEEDED" for c in reported.calls
        ):  # the server's own verdict
            assert time.monotonic() < until, [c.code for c in reported.calls]
            time.sleep(0.1)
        assert stub.ModelInfer(_mobilenet_request(), timeout=10).raw_output_contents
    finally:
        running.stop()


def _code_of(stub: object, request: pb.ModelInferRequest, timeout: float) -> grpc.StatusCode:
    try:
        stub.ModelInfer(request, timeout=timeout)  # type: ignore[attr-defined]
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_a_call_in_flight_finishes_when_the_plane_stops(pki: Pki) -> None:
    """Stopping sends GOAWAY and waits (up to 2 s) for the calls being served."""
    served = model("efficientnet_lite0_f32")
    start = start_message(
        pki, _peer_policy(mtls.RevocationList()), served, max_batch=32, max_message_bytes=64 << 20
    )
    running = launch(start)
    stub = stub_for(running, pki, pki.client)
    batch = 16
    request = pb.ModelInferRequest(model_name="efficientnet_lite0_f32")
    request.inputs.add(name=served.inputs[0].name, datatype="FP32", shape=[batch, 224, 224, 3])
    request.raw_input_contents.append(np.zeros((batch, 224, 224, 3), np.float32).tobytes())
    stub.ServerLive(pb.ServerLiveRequest(), timeout=10)  # connected
    future = stub.ModelInfer.future(request, timeout=30)
    time.sleep(0.3)  # sent (9.6 MB), and well inside its 16 invokes
    running.stop()
    response = future.result()
    assert response.outputs[0].shape == [batch, 1000]
    assert not running.running()
