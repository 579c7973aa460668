#!/usr/bin/python3
"""gRPC through the gateway, checked with grpcio (Debian python3-grpcio) on both sides: two
KServe v2 servers (GRPCInferenceService's ModelInfer and ModelStreamInfer, messages built by hand
in protobuf's wire format: no generated code) behind kind: grpc_inference clusters, a grpcio
client in front. Routing by model_name, streaming, deadlines, statuses passed through, the
gateway's own errors as gRPC statuses, and a backend that dies mid-stream. Bounded: about 15 s.

usage: grpc_check.py MERIDIAN_BINARY [MERIDIAN_MOCK_BINARY]

With the mock's binary, the harness's own gRPC engine (meridian-mock llm --grpc-listen) is a
backend too: discovered, probed, scraped and called through the gateway.
"""
import atexit
import http.server
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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


def bool_field(number, v):
    return varint(number << 3) + varint(int(v)) if v else b""


class Engine:
    """A KServe v2 gRPC server that answers with its own name in ModelInferResponse.id (3).
    With `repository` ({model: state}) it implements Triton's RepositoryIndex; with `ready_models`
    KServe v2's ModelReady; `health` adds grpc.health.v1. ServerReady answers `self.ready`."""

    def __init__(self, name, repository=None, ready_models=None, health=False, full=False, tls=None):
        self.name = name
        self.full = full  # every ModelInfer answered UNAVAILABLE (an engine at its limit)
        self.seen = []
        self.deadlines = []
        self.ready = True
        self.repository = repository
        self.ready_models = ready_models
        self.index_calls = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        methods = {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(self.infer),
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(self.stream),
            "ServerReady": grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: bool_field(1, self.ready)),
        }
        if repository is not None:
            methods["RepositoryIndex"] = grpc.unary_unary_rpc_method_handler(self.index)
        if ready_models is not None:
            methods["ModelReady"] = grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: bool_field(1, fields(req).get(1) in self.ready_models))
        handlers = [grpc.method_handlers_generic_handler(SERVICE, methods)]
        if health:
            # HealthCheckResponse.status: SERVING 1, NOT_SERVING 2.
            handlers.append(grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
                "Check": grpc.unary_unary_rpc_method_handler(
                    lambda req, ctx: varint(1 << 3) + varint(1 if self.ready else 2))}))
        self.server.add_generic_rpc_handlers(tuple(handlers))
        if tls:  # (key path, cert path): h2 over TLS, as grpcio offers it by ALPN
            creds = grpc.ssl_server_credentials([(open(tls[0], "rb").read(), open(tls[1], "rb").read())])
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def index(self, req, ctx):
        # RepositoryIndexResponse: repeated ModelIndex models = 1 (name 1, version 2, state 3).
        self.index_calls += 1
        return b"".join(string_field(1, string_field(1, m) + string_field(2, "1") + string_field(3, st))
                        for m, st in self.repository.items())

    def infer(self, req, ctx):
        f = fields(req)
        self.seen.append(f.get(1))
        self.deadlines.append(ctx.time_remaining())
        if self.full:
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "engine full")
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


class TritonMetrics(http.server.BaseHTTPRequestHandler):
    """Triton's metrics port: a queue of 7 (nv_inference_pending_request_count)."""

    def do_GET(self):
        body = b'nv_inference_pending_request_count{model="resnet",version="1"} 7\n'
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


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
    # Discovery and health: Triton-like engines listing their models (RepositoryIndex), a KServe
    # one that answers only ModelReady and grpc.health.v1, and Triton's metrics port.
    c = Engine("engine-c", repository={"resnet": "READY", "bert": "UNAVAILABLE"})
    d = Engine("engine-d", repository={"bert": "READY"})
    e = Engine("engine-e", ready_models={"vit"}, health=True)
    full, spare = Engine("engine-full", full=True), Engine("engine-spare")
    cert_dir = tempfile.mkdtemp(prefix="meridian-grpc-tls-")
    key, cert = os.path.join(cert_dir, "key.pem"), os.path.join(cert_dir, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    secure = Engine("engine-tls", tls=(key, cert))
    mock_bin = sys.argv[2] if len(sys.argv) > 2 else ""
    mock_proc, mock_http, mock_grpc = None, 0, 0
    if mock_bin and os.access(mock_bin, os.X_OK):
        mock_proc = subprocess.Popen([mock_bin, "llm", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0",
                                      "--default-max-tokens", "4", "--decode-ms", "2"],
                                     stderr=subprocess.PIPE, text=True)
        atexit.register(mock_proc.kill)
        for line in mock_proc.stderr:
            if "gRPC (h2c) on port" in line:
                mock_grpc = int(line.split()[-1])
                break
            if "listening on port" in line:
                mock_http = int(line.split()[5])
        threading.Thread(target=mock_proc.stderr.read, daemon=True).start()
    mock_cluster = f"""  - name: mock
    kind: grpc_inference
    endpoints: [ 127.0.0.1:{mock_grpc} ]
    probe: {{ interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }}
    models: {{ interval: 100ms }}
    load_metrics: {{ port: {mock_http}, interval: 100ms }}
""" if mock_grpc else ""
    metrics_srv = http.server.HTTPServer(("127.0.0.1", 0), TritonMetrics)
    threading.Thread(target=metrics_srv.serve_forever, daemon=True).start()
    mport = metrics_srv.server_address[1]
    port_dir = tempfile.mkdtemp(prefix="meridian-grpc-port-")
    port_file = os.path.join(port_dir, "port")
    doomed_proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--engine", "engine-doomed",
                                    port_file])
    atexit.register(doomed_proc.kill)  # whatever fails before the checks' own cleanup
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
    with tempfile.TemporaryDirectory(prefix="meridian-grpc-") as tmp:
        cfg = os.path.join(tmp, "gateway.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ name: public, address: 127.0.0.1:{port}, http2: true }} ]
admin: {{ address: 127.0.0.1:{admin} }}
workers: 1
io_backend: {os.environ.get("MERIDIAN_IO", "auto")}
timeouts: {{ body: 1s }}  # a request stream outlives it: it lasts as long as its call
clusters:
  - {{ name: llama, kind: grpc_inference, protocol: h2c, endpoints: [ 127.0.0.1:{a.port} ] }}
  - {{ name: mistral, kind: grpc_inference, endpoints: [ 127.0.0.1:{b.port} ] }}
  - {{ name: gone, kind: grpc_inference, endpoints: [ 127.0.0.1:{dead} ] }}
  - {{ name: doomed, kind: grpc_inference, endpoints: [ 127.0.0.1:{doomed.port} ] }}
  - name: triton
    kind: grpc_inference
    endpoints: [ 127.0.0.1:{c.port}, 127.0.0.1:{d.port} ]
    probe: {{ interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }}
    models: {{ interval: 100ms }}
    load_metrics: {{ port: {mport}, interval: 100ms }}
  - name: kserve
    kind: grpc_inference
    endpoints: [ 127.0.0.1:{e.port} ]
    probe: {{ path: /grpc.health.v1.Health/Check, interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }}
    models: {{ interval: 100ms, names: [ vit, resnet ] }}
  - {{ name: busy, kind: grpc_inference, balancer: round_robin,
      endpoints: [ 127.0.0.1:{full.port}, 127.0.0.1:{spare.port} ] }}
  - name: secure
    kind: grpc_inference
    protocol: h2
    tls: {{ ca: {cert} }}
    endpoints: [ 127.0.0.1:{secure.port} ]
    probe: {{ interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }}
  - {{ name: untrusted, kind: grpc_inference, tls: {{ }}, endpoints: [ 127.0.0.1:{secure.port} ] }}
{mock_cluster}routes:
  - {{ match: {{ grpc_service: {SERVICE}, headers: {{ x-pool: mock }} }}, cluster: {"mock" if mock_grpc else "secure"} }}
  - {{ match: {{ grpc_service: {SERVICE}, headers: {{ x-pool: secure }} }}, cluster: secure }}
  - {{ match: {{ grpc_service: {SERVICE}, headers: {{ x-pool: untrusted }} }}, cluster: untrusted }}
  - {{ match: {{ grpc_service: {SERVICE}, headers: {{ x-pool: busy }} }}, cluster: busy,
      retries: {{ on: [ connect_failure, unavailable ] }} }}
  - {{ match: {{ grpc_service: {SERVICE}, headers: {{ x-pool: busy-once }} }}, cluster: busy }}
  - {{ match: {{ grpc_service: {SERVICE}, headers: {{ x-pool: triton }} }}, cluster: triton }}
  - {{ match: {{ grpc_service: {SERVICE}, headers: {{ x-pool: kserve }} }}, cluster: kserve }}
  - {{ match: {{ grpc_service: {SERVICE}, model: llama-3 }}, cluster: llama }}
  - {{ match: {{ grpc_service: {SERVICE}, model: mistral-7b }}, cluster: mistral }}
  - {{ match: {{ grpc_service: {SERVICE}, model: nowhere }}, cluster: gone }}
  - {{ match: {{ grpc_service: {SERVICE}, model: doomed }}, cluster: doomed }}
""")
        log = open(os.path.join(tmp, "gateway.log"), "w+")
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

            def long_stream():
                # A bidirectional session longer than timeouts.body (1 s here): the request
                # stream is bounded by the call's deadline (grpc-timeout 6 s), not the body's.
                def reqs():
                    for i in range(3):
                        yield infer_request("mistral-7b", f"l{i}")
                        time.sleep(0.8)
                t0 = time.time()
                got = [fields(r)[3] for r in stream(reqs(), timeout=6)]
                assert got == ["engine-b:l0", "engine-b:l1", "engine-b:l2"], got
                return f"3 messages over {time.time() - t0:.1f} s with timeouts.body 1 s: all answered"

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

            def pool(name):
                return (("x-pool", name),)

            def until(fn, what, timeout=3.0):
                end = time.time() + timeout
                while time.time() < end:
                    if fn():
                        return
                    time.sleep(0.05)
                raise AssertionError(f"not within {timeout} s: {what}")

            def code_of(model, where):
                try:
                    infer(infer_request(model), timeout=5, metadata=pool(where))
                    return grpc.StatusCode.OK
                except grpc.RpcError as err:
                    return err.code()

            def discovered():
                until(lambda: c.index_calls > 0 and d.index_calls > 0, "RepositoryIndex called")
                until(lambda: code_of("gpt-9", "triton") == grpc.StatusCode.NOT_FOUND,
                      "NOT_FOUND for a model no endpoint lists")
                before_c, before_d = len(c.seen), len(d.seen)
                for _ in range(10):
                    assert fields(infer(infer_request("resnet"), timeout=5, metadata=pool("triton")))[3] == "engine-c"
                    assert fields(infer(infer_request("bert"), timeout=5, metadata=pool("triton")))[3] == "engine-d"
                assert len(c.seen) - before_c == 10 and len(d.seen) - before_d == 10
                try:
                    infer(infer_request("gpt-9"), timeout=5, metadata=pool("triton"))
                    raise AssertionError("answered")
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.NOT_FOUND, err.code()
                    assert "no healthy endpoint serves model 'gpt-9'" in err.details(), err.details()
                return ("RepositoryIndex: resnet (READY on c only) -> c x10, bert (READY on d, not on c) "
                        "-> d x10, gpt-9 NOT_FOUND")

            def model_ready():
                until(lambda: code_of("resnet", "kserve") == grpc.StatusCode.NOT_FOUND,
                      "ModelReady's answer known")
                assert fields(infer(infer_request("vit"), timeout=5, metadata=pool("kserve")))[3] == "engine-e"
                return "no RepositoryIndex: ModelReady for models.names: vit served, resnet (not ready) NOT_FOUND"

            def health():
                c.ready = False  # ServerReady false: c leaves; resnet is on no healthy endpoint
                until(lambda: code_of("resnet", "triton") == grpc.StatusCode.NOT_FOUND,
                      "c found not ready")
                assert code_of("bert", "triton") == grpc.StatusCode.OK
                c.ready = True
                until(lambda: code_of("resnet", "triton") == grpc.StatusCode.OK, "c ready again")
                e.ready = False  # grpc.health.v1 NOT_SERVING: unhealthy (its only endpoint: panic)
                until(lambda: endpoint_metric("meridian_endpoint_healthy", e.port) == ["0"],
                      "e found NOT_SERVING")
                e.ready = True
                until(lambda: endpoint_metric("meridian_endpoint_healthy", e.port) == ["1"],
                      "e serving again")
                return ("ServerReady false: resnet NOT_FOUND, bert still served, back when ready; "
                        "health.v1 NOT_SERVING: unhealthy, healthy again when SERVING")

            def endpoint_metric(name, engine_port, cluster=None):
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2) as r:
                    text = r.read().decode()
                want = f'endpoint="127.0.0.1:{engine_port}"'
                return [l.split()[-1] for l in text.splitlines()
                        if l.startswith(name + "{") and want in l
                        and (cluster is None or f'cluster="{cluster}"' in l)]

            def triton_load():
                until(lambda: endpoint_metric("meridian_endpoint_queue_depth", c.port) == ["7"],
                      "queue depth 7 scraped")
                return "nv_inference_pending_request_count 7 read from the metrics port into the load term"

            def retried_status():
                codes = [code_of("llama-3", "busy") for _ in range(10)]
                assert codes == [grpc.StatusCode.OK] * 10, codes
                assert len(full.seen) >= 4, len(full.seen)  # round robin: half went there first
                retries = [l for l in urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2)
                           .read().decode().splitlines()
                           if l.startswith("meridian_upstream_retries_total") and 'cluster="busy"' in l
                           and 'reason="grpc_status"' in l]
                assert retries and float(retries[0].split()[-1]) == len(full.seen), (retries, len(full.seen))
                first = len(full.seen)
                once = [code_of("llama-3", "busy-once") for _ in range(4)]
                assert grpc.StatusCode.UNAVAILABLE in once, once  # a route without the condition
                return (f"UNAVAILABLE with no message, retries: {{on: [unavailable]}}: 10 of 10 OK "
                        f"({first} answered by the full engine first, retried); without it: "
                        f"{sum(1 for c in once if c == grpc.StatusCode.UNAVAILABLE)} of 4 UNAVAILABLE")

            def errors_counted():
                # Each gRPC call counts in meridian_upstream_requests_total and its failures in
                # meridian_upstream_errors_total by kind, as HTTP requests do.
                def value(name, engine_port, kind=None):
                    got = [l for l in endpoint_lines(name, engine_port) if kind is None or f'kind="{kind}"' in l]
                    return sum(float(l.split()[-1]) for l in got)
                refused = value("meridian_upstream_errors_total", dead, "connect")
                cut = value("meridian_upstream_errors_total", doomed.port, "reset")
                sent = value("meridian_upstream_requests_total", a.port)
                assert refused >= 1 and cut >= 1 and sent >= 3, (refused, cut, sent)
                return f"errors: connect {refused:.0f} (nothing listening), reset {cut:.0f} (killed mid-stream); engine-a requests {sent:.0f}"

            def endpoint_lines(name, engine_port):
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2) as r:
                    text = r.read().decode()
                want = f'endpoint="127.0.0.1:{engine_port}"'
                return [l for l in text.splitlines() if l.startswith(name + "{") and want in l]

            def over_tls():
                got = fields(infer(infer_request("llama-3"), timeout=5, metadata=pool("secure")))
                assert got[3] == "engine-tls", got
                reqs = [infer_request("llama-3", f"t{i}") for i in range(3)]
                streamed = [fields(r)[3] for r in stream(iter(reqs), timeout=5, metadata=pool("secure"))]
                assert streamed == ["engine-tls:t0", "engine-tls:t1", "engine-tls:t2"], streamed
                until(lambda: len(endpoint_metric("meridian_endpoint_rtt_seconds", secure.port, "secure")) == 1,
                      "the TLS endpoint probed (ServerReady over TLS)")
                healthy = endpoint_metric("meridian_endpoint_healthy", secure.port, "secure")
                assert healthy == ["1"], healthy
                # The same backend's certificate checked against the system's store: refused.
                try:
                    infer(infer_request("llama-3"), timeout=5, metadata=pool("untrusted"))
                    raise AssertionError("answered over an unverified connection")
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE, err.code()
                    assert "TLS handshake failed" in (err.details() or ""), repr((err.code(), err.details()))
                return ("h2 over TLS (ALPN h2, certificate verified): unary and streaming calls, ServerReady "
                        "probe; a certificate the CA does not sign: UNAVAILABLE")

            def harness_engine():
                if not mock_grpc:
                    return "skipped: no meridian-mock binary given (the release ctest gives it)"
                until(lambda: code_of("other-model", "mock") == grpc.StatusCode.NOT_FOUND,
                      "the mock's RepositoryIndex known")
                got = fields(infer(infer_request("mock-llm", "u1"), timeout=5, metadata=pool("mock")))
                assert got == {1: "mock-llm", 3: "u1"}, got
                reqs = [infer_request("mock-llm", f"s{i}") for i in range(2)]
                msgs = list(stream(iter(reqs), timeout=5, metadata=pool("mock")))
                assert len(msgs) == 8, len(msgs)  # 4 tokens a message each, for each request
                until(lambda: endpoint_metric("meridian_endpoint_queue_depth", mock_grpc) == ["0"],
                      "the mock's queue scraped from its HTTP port")
                assert endpoint_metric("meridian_endpoint_healthy", mock_grpc) == ["1"]
                return ("meridian-mock's gRPC engine: discovered (other-model NOT_FOUND), probed, scraped; "
                        "ModelInfer answered, ModelStreamInfer 2 requests -> 8 token messages")

            def still_serving():
                ra = fields(infer(infer_request("llama-3"), timeout=5))
                assert ra[3] == "engine-a"
                return "the gateway still routes after all of the above"

            for name, fn in [("routed_by_model", routed), ("unknown_model", unknown_model),
                             ("streaming", streaming), ("interactive", interactive),
                             ("long_stream", long_stream), ("deadline", deadline),
                             ("status_passthrough", status_passthrough), ("unavailable", unavailable),
                             ("bad_message", bad_message), ("killed_mid_stream", killed_mid_stream),
                             ("clients_leave", clients_leave), ("discovered", discovered),
                             ("model_ready", model_ready), ("health", health),
                             ("triton_load", triton_load), ("retried_status", retried_status),
                             ("errors_counted", errors_counted), ("over_tls", over_tls),
                             ("harness_engine", harness_engine),
                             ("still_serving", still_serving)]:
                check(name, fn)
            channel.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            for engine in (a, b, c, d, e, full, spare, secure):
                engine.server.stop(0)
            metrics_srv.shutdown()
            if mock_proc:
                mock_proc.kill()
                mock_proc.wait()
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
