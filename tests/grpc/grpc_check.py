#!/usr/bin/python3
"""gRPC through the gateway, checked with grpcio (Debian python3-grpcio) on both sides: two
KServe v2 servers (GRPCInferenceService's ModelInfer and ModelStreamInfer, messages built by hand
in protobuf's wire format: no generated code) behind kind: grpc_inference clusters, a grpcio
client in front. Routing by model_name, streaming, deadlines, statuses passed through, the
gateway's own errors as gRPC statuses, and a backend that dies mid-stream. Bounded: about 15 s.

usage: grpc_check.py MERIDIAN_BINARY
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

try:
    import grpc
except ImportError:
    print("grpc_check.py needs grpcio for /usr/bin/python3 (Debian: apt-get install python3-grpcio)")
    sys.exit(1)

SERVICE = "inference.GRPCInferenceService"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string_field(number, s):
    b = s.encode() if isinstance(s, str) else s
    return varint(number << 3 | 2) + varint(len(b)) + b


def infer_request(model, req_id="r"):
    # ModelInferRequest: model_name = 1, model_version = 2, id = 3.
    return string_field(3, req_id) + string_field(1, model) + string_field(2, "1")


def fields(msg):
    """The string fields of a protobuf message, by number (last wins)."""
    out, i = {}, 0
    while i < len(msg):
        key, shift = 0, 0
        while True:
            b = msg[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        n, shift = 0, 0
        while True:
            b = msg[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out[key >> 3] = msg[i:i + n].decode()
        i += n
    return out


class Engine:
    """A KServe v2 gRPC server that answers with its own name in ModelInferResponse.id (3)."""

    def __init__(self, name):
        self.name = name
        self.seen = []
        self.deadlines = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(self.infer),
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(self.stream),
        })
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def infer(self, req, ctx):
        f = fields(req)
        self.seen.append(f.get(1))
        self.deadlines.append(ctx.time_remaining())
        if f.get(3) == "slow":
            time.sleep(2)
        if f.get(3) == "nap":
            time.sleep(0.3)
        if f.get(3) == "refuse":
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "input tensor INPUT0 is missing")
        return string_field(1, f.get(1, "")) + string_field(3, self.name)

    def stream(self, reqs, ctx):
        for req in reqs:
            f = fields(req)
            self.seen.append(f.get(1))
            if f.get(3) == "die":
                yield string_field(1, f.get(1, "")) + string_field(3, "last-words")
                time.sleep(30)  # killed meanwhile (SIGKILL from the test)
                return
            yield string_field(1, f.get(1, "")) + string_field(3, f"{self.name}:{f.get(3)}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def serve_alone(name, port_file):
    """The doomed engine: a process of its own, so the test can kill it mid-stream."""
    e = Engine(name)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(e.port))
    os.rename(port_file + ".tmp", port_file)
    e.server.wait_for_termination()


def main():
    if sys.argv[1] == "--engine":
        serve_alone(sys.argv[2], sys.argv[3])
        return 0
    binary = sys.argv[1]
    a, b = Engine("engine-a"), Engine("engine-b")
    port_dir = tempfile.mkdtemp(prefix="meridian-grpc-port-")
    port_file = os.path.join(port_dir, "port")
    doomed_proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--engine", "engine-doomed",
                                    port_file])
    for _ in range(200):
        if os.path.exists(port_file):
            break
        time.sleep(0.05)

    class Doomed:
        port = int(open(port_file).read())
    doomed = Doomed()
    os.unlink(port_file)
    os.rmdir(port_dir)
    port, admin, dead = free_port(), free_port(), free_port()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="meridian-grpc-") as d:
        cfg = os.path.join(d, "gateway.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ name: public, address: 127.0.0.1:{port}, http2: true }} ]
admin: {{ address: 127.0.0.1:{admin} }}
workers: 1
io_backend: {os.environ.get("MERIDIAN_IO", "auto")}
clusters:
  - {{ name: llama, kind: grpc_inference, protocol: h2c, endpoints: [ 127.0.0.1:{a.port} ] }}
  - {{ name: mistral, kind: grpc_inference, endpoints: [ 127.0.0.1:{b.port} ] }}
  - {{ name: gone, kind: grpc_inference, endpoints: [ 127.0.0.1:{dead} ] }}
  - {{ name: doomed, kind: grpc_inference, endpoints: [ 127.0.0.1:{doomed.port} ] }}
routes:
  - {{ match: {{ grpc_service: {SERVICE}, model: llama-3 }}, cluster: llama }}
  - {{ match: {{ grpc_service: {SERVICE}, model: mistral-7b }}, cluster: mistral }}
  - {{ match: {{ grpc_service: {SERVICE}, model: nowhere }}, cluster: gone }}
  - {{ match: {{ grpc_service: {SERVICE}, model: doomed }}, cluster: doomed }}
""")
        log = open(os.path.join(d, "gateway.log"), "w+")
        wrap = os.environ.get("MERIDIAN_WRAP", "").split()
        proc = subprocess.Popen(wrap + [binary, "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            infer = channel.unary_unary(f"/{SERVICE}/ModelInfer")
            stream = channel.stream_stream(f"/{SERVICE}/ModelStreamInfer")

            def check(name, fn):
                nonlocal failed
                t0 = time.time()
                try:
                    what = fn()
                    print(f"ok   {name:22} {what} ({time.time() - t0:.1f} s)")
                except Exception as e:  # noqa: BLE001 - each check reports its failure
                    failed += 1
                    print(f"FAIL {name:22} {type(e).__name__}: {e}")
                sys.stdout.flush()

            def routed():
                ra = fields(infer(infer_request("llama-3"), timeout=5))
                rb = fields(infer(infer_request("mistral-7b"), timeout=5))
                assert ra == {1: "llama-3", 3: "engine-a"}, ra
                assert rb == {1: "mistral-7b", 3: "engine-b"}, rb
                assert a.seen[-1] == "llama-3" and b.seen[-1] == "mistral-7b"
                return "llama-3 -> engine-a, mistral-7b -> engine-b (by ModelInferRequest.model_name)"

            def unknown_model():
                try:
                    infer(infer_request("gpt-9"), timeout=5)
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
                    return f"NOT_FOUND: {e.details()}"
                raise AssertionError("answered")

            def streaming():
                reqs = [infer_request("mistral-7b", f"s{i}") for i in range(3)]
                got = [fields(r)[3] for r in stream(iter(reqs), timeout=5)]
                assert got == ["engine-b:s0", "engine-b:s1", "engine-b:s2"], got
                return "ModelStreamInfer: 3 requests, 3 responses in order"

            def interactive():
                # Each request waits for the answer to the one before: the gateway must relay
                # responses while the request stream is still open.
                answered = threading.Event()

                def reqs():
                    for i in range(3):
                        yield infer_request("mistral-7b", f"i{i}")
                        if not answered.wait(3):
                            return
                        answered.clear()
                got = []
                t0 = time.time()
                for r in stream(reqs(), timeout=8):
                    got.append(fields(r)[3])
                    answered.set()
                assert got == ["engine-b:i0", "engine-b:i1", "engine-b:i2"], got
                return f"3 request/answer turns on one open stream in {time.time() - t0:.2f} s"

            def deadline():
                t0 = time.time()
                try:
                    infer(infer_request("llama-3", "slow"), timeout=0.5)
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.code()
                    took = time.time() - t0
                    remaining = a.deadlines[-1]
                    assert remaining is not None and remaining <= 0.5, remaining
                    return (f"DEADLINE_EXCEEDED after {took:.2f} s; the backend saw "
                            f"grpc-timeout {remaining:.2f} s left")
                raise AssertionError("answered")

            def status_passthrough():
                try:
                    infer(infer_request("llama-3", "refuse"), timeout=5)
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
                    assert e.details() == "input tensor INPUT0 is missing", e.details()
                    return f"backend's INVALID_ARGUMENT '{e.details()}' reached the client"
                raise AssertionError("answered")

            def unavailable():
                try:
                    infer(infer_request("nowhere"), timeout=5)
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, e.code()
                    return f"nothing listening: UNAVAILABLE ({e.details()})"
                raise AssertionError("answered")

            def bad_message():
                raw = channel.unary_unary(f"/{SERVICE}/ModelInfer")
                try:
                    raw(b"\x0a\xff\x01oops", timeout=5)
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
                    return f"not protobuf: INVALID_ARGUMENT ({e.details()})"
                raise AssertionError("answered")

            def killed_mid_stream():
                reqs = [infer_request("doomed", "die")]
                got = []
                try:
                    for r in stream(iter(reqs), timeout=5):
                        got.append(fields(r)[3])
                        doomed_proc.kill()  # the backend dies with the stream open
                except grpc.RpcError as e:
                    assert got == ["last-words"], got
                    assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                                        grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED), e.code()
                    return f"one message, then {e.code().name} ({e.details()}), no hang"
                raise AssertionError(f"stream ended cleanly with {got}")

            def clients_leave():
                # Calls in flight when their client goes: each is reset upstream, none is
                # counted against the endpoint, and the gateway carries on.
                gone = grpc.insecure_channel(f"127.0.0.1:{port}")
                call = gone.unary_unary(f"/{SERVICE}/ModelInfer")
                futs = [call.future(infer_request("llama-3", "nap"), timeout=5) for _ in range(24)]
                time.sleep(0.1)
                gone.close()
                cancelled = sum(1 for f in futs if f.cancelled() or f.exception() is not None)
                assert cancelled == 24, cancelled
                return "24 calls in flight, their channel closed: all cancelled"

            def still_serving():
                ra = fields(infer(infer_request("llama-3"), timeout=5))
                assert ra[3] == "engine-a"
                return "the gateway still routes after all of the above"

            for name, fn in [("routed_by_model", routed), ("unknown_model", unknown_model),
                             ("streaming", streaming), ("interactive", interactive),
                             ("deadline", deadline),
                             ("status_passthrough", status_passthrough), ("unavailable", unavailable),
                             ("bad_message", bad_message), ("killed_mid_stream", killed_mid_stream),
                             ("clients_leave", clients_leave), ("still_serving", still_serving)]:
                check(name, fn)
            channel.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            for e in (a, b):
                e.server.stop(0)
            doomed_proc.kill()
            doomed_proc.wait()
            log.seek(0)
            text = log.read()
            # The access log names each call's gRPC status: the backend's, or the gateway's own.
            for code, what in (("0", "OK"), ("3", "the backend's INVALID_ARGUMENT"),
                               ("14", "the gateway's UNAVAILABLE")):
                if f'"protocol":"h2"' not in text or f'"grpc_status":"{code}"' not in text:
                    failed += 1
                    print(f"FAIL access_log           no line with grpc_status {code} ({what})")
                    break
            else:
                print("ok   access_log             grpc_status 0, 3 (backend) and 14 (gateway) logged")
            bad = [l for l in text.splitlines() if "Sanitizer" in l or "runtime error:" in l]
            if bad:
                failed += 1
                start = text.find("ERROR: AddressSanitizer")
                report = text[start:start + 30000] if start >= 0 else "\n".join(bad[:5])
                print("FAIL the gateway reported: " + report)
            if failed:
                print(f"---- gateway exit {proc.returncode}, log (tail) ----")
                print("\n".join(text.splitlines()[-25:]))
    print(f"{'all passed' if not failed else f'{failed} failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
