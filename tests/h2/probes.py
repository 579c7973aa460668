#!/usr/bin/python3
"""HTTP/2 probe suite: a gateway (the meridian binary given) in front of a Python HTTP/1.1
backend that records what reaches it, driven by clients built on the `h2` package (Debian
python3-h2), not on our code. Every case reports what the client saw, what the gateway counted
(/metrics) and what the backend received, and fails when one differs from RFC 9113 or the
gateway's limits. Bounded: each case has a deadline; the whole suite runs in about a minute.

usage: probes.py MERIDIAN_BINARY [--only NAME]
"""
import json
import os
import select
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import http.server
import socketserver

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.errors
    import h2.settings
    import hpack
except ImportError:
    print("probes.py needs the h2 package for /usr/bin/python3 (Debian: apt-get install python3-h2)")
    sys.exit(1)

# ---- the backend: records each request it receives ------------------------------------------

SEEN = []          # (method, path, headers dict, body bytes)
SEEN_LOCK = threading.Lock()
HOLD_CLOSED = {}   # path -> time the backend saw its client (the gateway) close


class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def record(self, body=b""):
        with SEEN_LOCK:
            SEEN.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))

    def reply(self, status, body, ctype="application/json"):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        self.record()
        if self.path.startswith("/sse"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(4):
                self.chunk(b"data: %d\n\n" % i)
                time.sleep(0.25)
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/hold"):
            # One event, then wait for the gateway to go away (reported with its time).
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.chunk(b"data: first\n\n")
            end = time.time() + 10
            while time.time() < end:
                r, _, _ = select.select([self.connection], [], [], 0.005)
                if r and not self.connection.recv(1, socket.MSG_PEEK):
                    HOLD_CLOSED[self.path] = time.time()
                    return
            return
        if self.path.startswith("/m/"):
            time.sleep(0.2)
        if self.path.startswith("/slower"):
            time.sleep(2.5)
        elif self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path.startswith("/big"):
            n = int(self.path.split("/")[-1])
            self.reply(200, b"x" * n, "application/octet-stream")
            return
        self.reply(200, json.dumps({"path": self.path}).encode())

    def do_POST(self):
        body = self.body()
        self.record(body)
        self.reply(200, json.dumps({"len": len(body)}).encode())


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---- the gateway ------------------------------------------------------------------------------

class Gateway:
    def __init__(self, binary, workdir):
        self.port, self.tls_port, self.admin, self.backend = (free_port() for _ in range(4))
        self.cert = os.path.join(workdir, "cert.pem")
        self.key = os.path.join(workdir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        cfg = os.path.join(workdir, "gateway.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners:
  - {{ name: public, address: 127.0.0.1:{self.port}, http2: true }}
  - name: secure
    address: 127.0.0.1:{self.tls_port}
    tls:
      certificates: [ {{ cert: {self.cert}, key: {self.key} }} ]
      alpn: [ h2, http/1.1 ]
admin: {{ address: 127.0.0.1:{self.admin} }}
workers: 1
limits: {{ max_concurrent_streams: 16, max_header_bytes: 8KiB, max_body_bytes: 1MiB,
           body_prebuffer_bytes: 64KiB, min_data_rate: 1024 }}
timeouts: {{ header: 1s, body: 1s, idle: 2s, data_rate_window: 1s }}
clusters:
  - name: be
    kind: generic
    endpoints: [ 127.0.0.1:{self.backend} ]
routes:
  - {{ match: {{ path_prefix: / }}, cluster: be }}
""")
        self.server = ThreadingServer(("127.0.0.1", self.backend), Backend)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.log = open(os.path.join(workdir, "gateway.log"), "w+")
        self.proc = subprocess.Popen([binary, "--config", cfg], stdout=self.log, stderr=subprocess.STDOUT)
        end = time.time() + 10
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gateway did not start")

    def metric(self, name, **labels):
        s = socket.create_connection(("127.0.0.1", self.admin), timeout=2)
        s.sendall(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in data.decode().splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return None

    def drain(self):
        s = socket.create_connection(("127.0.0.1", self.admin), timeout=2)
        s.sendall(b"POST /admin/drain HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        s.recv(4096)
        s.close()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.server.shutdown()


# ---- the client -------------------------------------------------------------------------------

class Client:
    def __init__(self, gw, tls=False, validate=True, settings=None):
        if tls:
            ctx = ssl.create_default_context(cafile=gw.cert)
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            raw = socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5)
            self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
            self.alpn = self.sock.selected_alpn_protocol()
        else:
            self.sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=validate,
                                        normalize_outbound_headers=validate,
                                        validate_inbound_headers=True)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.events = []
        self.closed = False
        self.authority = f"127.0.0.1:{gw.port}"

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    def pump(self, timeout=0.2):
        """Reads what is there within `timeout`; returns the new events."""
        self.sock.settimeout(timeout)
        new = []
        try:
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                return new
            for ev in self.conn.receive_data(data):
                new.append((time.time(), ev))
            self.flush()
        except (socket.timeout, ssl.SSLWantReadError):
            pass
        except (ConnectionResetError, BrokenPipeError):
            self.closed = True
        except h2.exceptions.ProtocolError:
            self.closed = True
        self.events += new
        return new

    def until(self, pred, timeout=5.0):
        end = time.time() + timeout
        while time.time() < end and not self.closed:
            if pred():
                return True
            self.pump(0.05)
        return pred()

    def request(self, path, method="GET", headers=(), body=None, end=True, flush=True):
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":path", path), (":scheme", "http"), (":authority", self.authority)]
        hs += list(headers)
        self.conn.send_headers(sid, hs, end_stream=(body is None and end))
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        if flush:
            self.flush()
        return sid

    def response(self, sid, timeout=5.0):
        """(status, headers, body, ended, reset_code) of stream sid."""
        def done():
            return any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == sid
                       for _, e in self.events)
        self.until(done, timeout)
        status, headers, body, ended, reset = None, {}, b"", False, None
        for _, e in self.events:
            if getattr(e, "stream_id", None) != sid:
                continue
            if isinstance(e, h2.events.ResponseReceived):
                headers = {k.decode(): v.decode() for k, v in e.headers}
                status = int(headers[":status"])
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
                self.conn.acknowledge_received_data(e.flow_controlled_length, sid)
            elif isinstance(e, h2.events.StreamEnded):
                ended = True
            elif isinstance(e, h2.events.StreamReset):
                reset = e.error_code
        self.flush()
        return status, headers, body, ended, reset

    def goaway(self):
        for _, e in self.events:
            if isinstance(e, h2.events.ConnectionTerminated):
                return e.error_code
        return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


# ---- the cases --------------------------------------------------------------------------------

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def seen_paths():
    with SEEN_LOCK:
        return [p for _, p, _, _ in SEEN]


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


@case
def get_and_headers(gw):
    c = Client(gw)
    sid = c.request("/hello?x=1", headers=[("cookie", "a=1"), ("cookie", "b=2"), ("x-request-id", "probe-1")])
    st, hs, body, ended, _ = c.response(sid)
    expect(st == 200 and ended, f"status {st}")
    expect(hs.get("x-request-id") == "probe-1", f"x-request-id {hs.get('x-request-id')}")
    expect("connection" not in hs and "transfer-encoding" not in hs, "connection-specific field in a response")
    m, p, h, _ = SEEN[-1]
    expect(p == "/hello?x=1" and h.get("host") == c.authority, f"backend saw {p} host {h.get('host')}")
    expect(h.get("cookie") == "a=1; b=2", f"cookies joined: {h.get('cookie')}")
    expect(h.get("x-forwarded-proto") == "http", "x-forwarded-proto")
    c.close()
    return f"200, backend saw GET {p} host={h.get('host')} cookie='{h.get('cookie')}'"


@case
def bodies(gw):
    c = Client(gw)
    a = c.request("/post", "POST", [("content-length", "11")], b"hello world")
    b = c.request("/post", "POST", [], b"no length" * 1000)  # no content-length: chunked upstream
    big = os.urandom(300 * 1024)  # past the stream window and the prebuffer: streamed
    d = c.request("/post", "POST", [("content-length", str(len(big)))], b"", end=False)
    for i in range(0, len(big), 16384):
        while c.conn.local_flow_control_window(d) < 16384:
            c.pump(0.05)
        c.conn.send_data(d, big[i:i + 16384], end_stream=(i + 16384 >= len(big)))
        c.flush()
    ra, rb, rd = c.response(a), c.response(b), c.response(d, 10)
    expect(json.loads(ra[2]) == {"len": 11}, f"a: {ra}")
    expect(json.loads(rb[2]) == {"len": 9000}, f"b: {rb[:2]}")
    expect(rd[0] == 200 and json.loads(rd[2]) == {"len": len(big)}, f"d: {rd[0]} {rd[2][:80]}")
    with SEEN_LOCK:
        got = {len(b_): h.get("transfer-encoding") for _, p, h, b_ in SEEN if p == "/post"}
    expect(got.get(9000) == "chunked" and got.get(len(big)) is None and SEEN[-1][3] == big or
           any(b_ == big for *_, b_ in SEEN), "backend bodies")
    c.close()
    return "content-length 11 -> 11, no length 9000 -> chunked 9000, 300 KiB streamed intact"


@case
def multiplexed(gw):
    r0 = gw.metric("meridian_http2_stream_resets_total", by="gateway", reason="refused") or 0
    c = Client(gw)
    # 40 at once, in one write before the gateway's SETTINGS arrive: 16 (max_concurrent_streams)
    # are served, the others refused with REFUSED_STREAM (safe to retry: RFC 9113 8.7). The
    # backend holds /m/ for 0.2 s so no stream can end before the last HEADERS is read.
    sids = [c.request(f"/m/{i}", flush=False) for i in range(40)]
    c.flush()
    results = [c.response(s) for s in sids]
    ok = sum(1 for r in results if r[0] == 200)
    refused = sum(1 for r in results if r[4] == h2.errors.ErrorCodes.REFUSED_STREAM)
    r1 = gw.metric("meridian_http2_stream_resets_total", by="gateway", reason="refused")
    c.close()
    expect(ok == 16 and refused == 24, f"{ok} served, {refused} refused")
    expect(r1 == r0 + 24, f"refused metric {r0} -> {r1}")
    # A client that waits for the SETTINGS gets them all served on one connection.
    c = Client(gw)
    c.until(lambda: c.conn.remote_settings.max_concurrent_streams == 16, 2)
    done = 0
    for batch in range(3):
        sids = [c.request(f"/m/{batch}/{i}") for i in range(16)]
        done += sum(1 for s in sids if c.response(s)[0] == 200)
    c.close()
    expect(done == 48, f"{done} of 48 after SETTINGS")
    return "40 streams at once: 16 served, 24 REFUSED_STREAM (counted); 3 x 16 after SETTINGS: all 200"


@case
def sse_not_clumped(gw):
    c = Client(gw)
    sid = c.request("/sse")
    c.response(sid, 5)
    times = [t for t, e in c.events if isinstance(e, h2.events.DataReceived) and e.stream_id == sid and e.data]
    gaps = [b - a for a, b in zip(times, times[1:])]
    expect(len(times) >= 4 and all(g > 0.15 for g in gaps[:3]), f"events at gaps {gaps}")
    c.close()
    return f"4 events, each as it came: gaps {', '.join(f'{g*1000:.0f}' for g in gaps)} ms"


@case
def reset_cancels_upstream(gw):
    c = Client(gw)
    sid = c.request("/hold/1")
    c.until(lambda: any(isinstance(e, h2.events.DataReceived) and e.stream_id == sid for _, e in c.events))
    t0 = time.time()
    c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    c.flush()
    end = time.time() + 3
    while "/hold/1" not in HOLD_CLOSED and time.time() < end:
        time.sleep(0.005)
    expect("/hold/1" in HOLD_CLOSED, "the backend's request was never cancelled")
    dt = HOLD_CLOSED["/hold/1"] - t0
    expect(dt < 0.1, f"upstream cancelled {dt*1000:.0f} ms after RST_STREAM")
    # The connection goes on.
    st = c.response(c.request("/after-reset"))[0]
    expect(st == 200, "connection unusable after a reset")
    c.close()
    return f"backend saw its request cancelled {dt*1000:.1f} ms after RST_STREAM; connection still serves"


def malformed(gw, headers, name):
    before = len(SEEN)
    c = Client(gw, validate=False)
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, headers, end_stream=True)
    c.flush()
    st, _, _, _, reset = c.response(sid, 3)
    c.close()
    expect(st is None and reset == h2.errors.ErrorCodes.PROTOCOL_ERROR, f"{name}: status {st} reset {reset}")
    expect(len(SEEN) == before, f"{name}: reached the backend")
    return f"{name}: RST_STREAM PROTOCOL_ERROR"


BASE = [(":method", "GET"), (":scheme", "http"), (":authority", "x")]


@case
def malformed_headers(gw):
    out = [
        malformed(gw, BASE + [(":path", "/u"), ("X-Upper", "1")], "uppercase name"),
        malformed(gw, BASE + [(":path", "/c"), ("connection", "keep-alive")], "connection header"),
        malformed(gw, BASE + [(":path", "/t"), ("transfer-encoding", "chunked")], "transfer-encoding"),
        malformed(gw, BASE + [(":path", "/p"), (":bogus", "1")], "unknown pseudo-header"),
        malformed(gw, BASE, "missing :path"),
        malformed(gw, [(":path", "/o")] + BASE[:1] + [("x", "1"), (":scheme", "http")], "pseudo after regular"),
        malformed(gw, BASE + [(":path", "/te"), ("te", "gzip")], "te other than trailers"),
    ]
    return "; ".join(out)


@case
def content_length_mismatch(gw):
    before = len(SEEN)
    c = Client(gw, validate=False)
    sid = c.request("/cl", "POST", [("content-length", "10")], b"12345", end=True)
    st, _, _, _, reset = c.response(sid, 3)
    c.close()
    expect(st is None and reset == h2.errors.ErrorCodes.PROTOCOL_ERROR, f"status {st} reset {reset}")
    expect(len(SEEN) == before, "reached the backend")
    return "content-length 10 with 5 bytes: RST_STREAM PROTOCOL_ERROR, backend saw nothing"


@case
def limits(gw):
    c = Client(gw)
    big = c.request("/h", headers=[("x-big", "v" * 9000)])
    st_big = c.response(big)[0]
    toolarge = c.request("/post", "POST", [("content-length", str(2 << 20))], b"", end=False)
    st_body = c.response(toolarge)[0]
    slow = c.request("/post", "POST", [("content-length", "100")], b"x", end=False)
    st_slow = c.response(slow, 4)[0]
    c.close()
    expect(st_big == 431, f"9 KiB header list: {st_big}")
    expect(st_body == 413, f"2 MiB body: {st_body}")
    expect(st_slow == 408, f"body never finished: {st_slow}")
    return "header list 9 KiB > 8 KiB: 431; content-length 2 MiB > 1 MiB: 413; body stalled: 408 after 1 s"


@case
def rapid_reset(gw):
    before = len(SEEN)
    g0 = gw.metric("meridian_http2_goaway_total", reason="rapid_reset") or 0
    c = Client(gw)
    opened = 0
    try:
        for i in range(1000):
            sid = c.request(f"/rr/{i}")
            c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            c.flush()
            opened += 1
    except OSError:
        pass  # the gateway ended the connection
    c.until(lambda: c.goaway() is not None, 3)
    code = c.goaway()
    c.close()
    time.sleep(0.3)
    reached = len(SEEN) - before
    g1 = gw.metric("meridian_http2_goaway_total", reason="rapid_reset")
    expect(code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, f"GOAWAY {code}")
    expect(g1 == g0 + 1, f"metric {g0} -> {g1}")
    # Work upstream is bounded: at most max_concurrent_streams (16) requests at any time.
    expect(reached <= 250, f"{reached} requests reached the backend")
    return (f"{opened} streams opened and reset: GOAWAY ENHANCE_YOUR_CALM after ~200, "
            f"{reached} reached the backend")


@case
def continuation_flood(gw):
    c = Client(gw)
    enc = hpack.Encoder()
    block = enc.encode([(":method", "GET"), (":path", "/cf"), (":scheme", "http"), (":authority", "x")])
    c.send_raw(frame(0x1, 0x0, 1, block))  # HEADERS without END_HEADERS
    try:
        for i in range(100):
            c.send_raw(frame(0x9, 0, 1, enc.encode([("x-c", "y" * 10)])))
    except OSError:
        pass
    c.until(lambda: c.closed or c.goaway() is not None, 3)
    code = c.goaway()
    c.close()
    m = gw.metric("meridian_http2_goaway_total", reason="continuation_flood")
    expect(m and m >= 1, f"metric {m}, GOAWAY {code}")
    return f"HEADERS + 100 CONTINUATION: connection ended (GOAWAY {code}), counted as continuation_flood"


@case
def hpack_bomb(gw):
    c = Client(gw, validate=False)
    enc = hpack.Encoder()
    hs = [(":method", "GET"), (":path", "/bomb"), (":scheme", "http"), (":authority", "x")]
    hs += [("x-bomb", "b" * 3000)] * 200  # 600 KB decoded from a few KB: the table is reused
    block = enc.encode(hs)
    for i in range(0, len(block), 16384):
        last = i + 16384 >= len(block)
        c.send_raw(frame(0x1 if i == 0 else 0x9, (0x4 if last else 0) | (0x1 if i == 0 else 0), 1,
                         block[i:i + 16384]))
    c.until(lambda: c.closed or c.goaway() is not None, 3)
    code = c.goaway()
    c.close()
    m = gw.metric("meridian_http2_goaway_total", reason="header_list_too_large")
    expect(code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM and m >= 1, f"GOAWAY {code}, metric {m}")
    return f"{len(block)} bytes of HPACK decoding to 600 KB: GOAWAY ENHANCE_YOUR_CALM"


def flood(gw, make, reason, n=20000):
    c = Client(gw)
    try:
        for i in range(0, n, 500):
            c.send_raw(b"".join(make(j) for j in range(i, i + 500)))
    except OSError:
        pass
    c.until(lambda: c.closed or c.goaway() is not None, 3)
    code = c.goaway()
    c.close()
    m = gw.metric("meridian_http2_goaway_total", reason=reason)
    expect(code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM or c.closed, f"GOAWAY {code}")
    expect(m and m >= 1, f"{reason} metric {m}")
    return f"{reason}: GOAWAY {code}"


@case
def control_floods(gw):
    return "; ".join([
        flood(gw, lambda j: frame(0x4, 0, 0, b""), "control_flood"),                      # SETTINGS
        flood(gw, lambda j: frame(0x6, 0, 0, struct.pack(">Q", j)), "control_flood"),     # PING
        flood(gw, lambda j: frame(0x8, 0, 0, struct.pack(">I", 1)), "control_flood"),     # WINDOW_UPDATE
    ])


@case
def zero_window(gw):
    s0 = gw.metric("meridian_http2_stream_resets_total", by="gateway", reason="stalled") or 0
    c = Client(gw, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    sid = c.request("/big/2000000")
    t0 = time.time()
    st, _, body, ended, reset = c.response(sid, 8)
    dt = time.time() - t0
    s1 = gw.metric("meridian_http2_stream_resets_total", by="gateway", reason="stalled")
    # The connection is still good for other streams.
    c.close()
    expect(reset == h2.errors.ErrorCodes.CANCEL and not ended, f"status {st} reset {reset} ended {ended}")
    expect(s1 == s0 + 1, f"stalled metric {s0} -> {s1}")
    return f"window 0 on a 2 MB response: stream reset (CANCEL) after {dt:.1f} s, counted as stalled"


@case
def connection_closed_mid_streams(gw):
    # Streams waiting on the backend and responses half sent when the client goes: the gateway
    # lets go of each (nghttp2 still holds them until the session ends) and keeps serving.
    for tls in (False, True):
        for _ in range(3):
            c = Client(gw, tls=tls)
            if tls:
                c.authority = "localhost"
            for i in range(6):
                c.request(f"/slow/gone/{i}")
                c.request("/big/400000")
            c.pump(0.1)
            c.sock.close()
    time.sleep(1.3)
    c = Client(gw)
    st = c.response(c.request("/after-gone"))[0]
    c.close()
    expect(st == 200 and gw.proc.poll() is None, f"after: {st}, gateway exit {gw.proc.poll()}")
    return "6 connections closed with 12 streams each in flight (h2c and TLS): gateway still serves"


@case
def idle_connection(gw):
    c = Client(gw)
    c.until(lambda: c.goaway() is not None, 4)
    code = c.goaway()
    c.close()
    expect(code == h2.errors.ErrorCodes.NO_ERROR, f"GOAWAY {code}")
    return "no stream for the idle timeout (2 s): GOAWAY NO_ERROR"


@case
def bad_preface(gw):
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=3)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    data = s.recv(4096)
    s.close()
    return f"a broken preface: {len(data)} bytes back, connection closed"


@case
def http1_same_port(gw):
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=3)
    s.sendall(b"GET /h1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    expect(data.startswith(b"HTTP/1.1 200"), data[:40])
    return "HTTP/1.1 on the h2c port: 200"


@case
def tls_alpn(gw):
    c = Client(gw, tls=True)
    expect(c.alpn == "h2", f"ALPN {c.alpn}")
    c.authority = "localhost"
    sid = c.request("/tls")
    st = c.response(sid)[0]
    _, p, h, _ = SEEN[-1]
    c.close()
    expect(st == 200 and h.get("x-forwarded-proto") == "https", f"{st} {h.get('x-forwarded-proto')}")
    return "h2 over TLS by ALPN: 200, backend saw x-forwarded-proto https"


def read_frames(sock, deadline):
    """Frames as (time, type, flags, stream id, payload) until the connection closes or the
    deadline; parsed here because h2's state machine stops at GOAWAY, and what follows a
    graceful GOAWAY is the point."""
    buf, out = b"", []
    sock.settimeout(0.1)
    while time.time() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not data:
            break
        buf += data
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            out.append((time.time(), buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF,
                        buf[9:9 + length]))
            buf = buf[9 + length:]
    return out


@case
def curl(gw):
    out = []
    for args, url in ((["--http2-prior-knowledge"], f"http://127.0.0.1:{gw.port}/curl"),
                      (["--http2", "--cacert", gw.cert], f"https://localhost:{gw.tls_port}/curl-tls")):
        r = subprocess.run(["curl", "-sS", "--resolve", f"localhost:{gw.tls_port}:127.0.0.1", "-o",
                            "/dev/null", "-w", "%{http_version} %{http_code}"] + args + [url],
                           capture_output=True, text=True, timeout=10)
        expect(r.stdout == "2 200", f"curl {' '.join(args[:1])}: {r.stdout} {r.stderr}")
        out.append(f"curl {args[0]}: HTTP/2 200")
    return "; ".join(out)


@case
def drain(gw):
    # Last: SIGTERM drains and stops the gateway.
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=3)
    block = hpack.Encoder().encode([(":method", "GET"), (":path", "/slower/drain"), (":scheme", "http"),
                                    (":authority", "x")])
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b"") + frame(0x1, 0x5, 1, block))
    time.sleep(0.2)
    gw.proc.terminate()
    frames = read_frames(s, time.time() + 6)
    s.close()
    kinds = [(t, ty, fl, sid) for t, ty, fl, sid, _ in frames]
    goaway = next((f for f in frames if f[1] == 0x7), None)
    expect(goaway is not None, f"no GOAWAY in {[(ty, sid) for _, ty, _, sid in kinds]}")
    code = int.from_bytes(goaway[4][4:8], "big")
    last_id = int.from_bytes(goaway[4][:4], "big") & 0x7FFFFFFF
    head = next((f for f in frames if f[1] == 0x1 and f[3] == 1), None)
    ended = any(f[3] == 1 and f[2] & 0x1 for f in frames if f[1] in (0x0, 0x1))
    expect(code == 0 and last_id >= 1, f"GOAWAY code {code} last stream {last_id}")
    expect(head is not None and head[0] > goaway[0] and ended, "the open stream did not finish after GOAWAY")
    status = dict(hpack.Decoder().decode(head[4])).get(":status")
    expect(status == "200", f"status {status}")
    return (f"SIGTERM: GOAWAY NO_ERROR (last stream {last_id}), the open stream finished 200 "
            f"{head[0] - goaway[0]:.1f} s later, then the connection closed")


def main():
    binary = sys.argv[1]
    only = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--only" else None
    failed = 0
    with tempfile.TemporaryDirectory(prefix="meridian-h2-") as d:
        gw = Gateway(binary, d)
        try:
            for fn in CASES:
                if only and fn.__name__ != only:
                    continue
                t0 = time.time()
                try:
                    what = fn(gw)
                    print(f"ok   {fn.__name__:24} {what} ({time.time()-t0:.1f} s)")
                except Exception as e:  # noqa: BLE001 - a probe reports every failure
                    failed += 1
                    print(f"FAIL {fn.__name__:24} {type(e).__name__}: {e}")
                sys.stdout.flush()
        finally:
            gw.stop()
            gw.log.seek(0)
            bad = [l for l in gw.log.readlines()
                   if "Sanitizer" in l or "runtime error:" in l or "terminate called" in l]
            if bad:
                failed += 1
                print("FAIL the gateway reported: " + "".join(bad[:5]))
            if failed:
                gw.log.seek(0)
                print("---- gateway log (tail) ----")
                print("".join(gw.log.readlines()[-30:]))
    print(f"{len([c for c in CASES if not only or c.__name__ == only]) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
