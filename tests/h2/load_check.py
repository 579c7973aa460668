#!/usr/bin/python3
"""meridian-load over HTTP/2, against the gateway and meridian-mock (both ours) and checked
against what the other side counted: the gateway's access log (protocol, requests, connections
seen in /metrics) and the mock's own counters. Cases:

  openai_h2c     --http2 --streams 8 on 2 connections: every streamed chat request completes,
                 TTFT/ITL/TPOT per stream, tokens as asked, 80 h2 lines in the access log and the
                 gateway's h2 connections no more than meridian-load's 2
  openai_h2_tls  the same over TLS, h2 chosen by ALPN; a listener offering only http/1.1 refuses
                 the handshake (no_application_protocol), reported as the reason
  kserve_stream  --kserve --stream (ModelStreamInfer) through the gateway's gRPC route and straight
                 to the mock's gRPC port: time to first message, a token per message
  kserve_status  a model the engine does not serve: every call ends in grpc_status errors
  timeout        streams past --timeout end as timeouts, the connection's other streams go on

usage: load_check.py MERIDIAN MERIDIAN_MOCK MERIDIAN_LOAD
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from harness import expect, free_port, http_get, metric, run_cases, wait_port  # noqa: E402


class Rig:
    def __init__(self, meridian, mock, load, tmp):
        self.load, self.tmp = load, tmp
        self.cert, self.key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        self.mock = subprocess.Popen([mock, "llm", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0",
                                      "--default-max-tokens", "6", "--decode-ms", "3"],
                                     stderr=subprocess.PIPE, text=True)
        self.mock_http = self.mock_grpc = 0
        for line in self.mock.stderr:
            if "gRPC (h2c) on port" in line:
                self.mock_grpc = int(line.split()[-1])
                break
            if "listening on port" in line:
                self.mock_http = int(line.split()[5])
        threading.Thread(target=self.mock.stderr.read, daemon=True).start()
        if not (self.mock_http and self.mock_grpc):
            raise RuntimeError("meridian-mock did not report its ports")
        self.port, self.tls_port, self.h1_port, self.admin = (free_port() for _ in range(4))
        cfg = os.path.join(tmp, "gateway.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners:
  - {{ name: public, address: 127.0.0.1:{self.port}, http2: true }}
  - name: secure
    address: 127.0.0.1:{self.tls_port}
    tls: {{ certificates: [ {{ cert: {self.cert}, key: {self.key} }} ], alpn: [ h2, http/1.1 ] }}
  - name: only-h1
    address: 127.0.0.1:{self.h1_port}
    tls: {{ certificates: [ {{ cert: {self.cert}, key: {self.key} }} ], alpn: [ http/1.1 ] }}
admin: {{ address: 127.0.0.1:{self.admin} }}
workers: 1
clusters:
  - {{ name: llm, kind: inference, endpoints: [ 127.0.0.1:{self.mock_http} ] }}
  - {{ name: engine, kind: grpc_inference, endpoints: [ 127.0.0.1:{self.mock_grpc} ],
      models: {{ interval: 100ms }} }}
routes:
  - {{ match: {{ grpc_service: inference.GRPCInferenceService }}, cluster: engine }}
  - {{ match: {{ path_prefix: / }}, cluster: llm }}
""")
        self.log_path = os.path.join(tmp, "gateway.log")
        self.log = open(self.log_path, "w")
        self.gw = subprocess.Popen([meridian, "--config", cfg], stdout=self.log, stderr=subprocess.STDOUT)
        for p in (self.port, self.tls_port, self.h1_port, self.admin):
            wait_port(p, "the gateway", self.gw)
        time.sleep(0.5)  # the first model discovery of the gRPC cluster

    def close(self):
        for p in (self.gw, self.mock):
            p.kill()
            p.wait()
        self.log.close()

    def run_load(self, *args, url=None):
        out = os.path.join(self.tmp, "load.json")
        if os.path.exists(out):
            os.unlink(out)
        cmd = [self.load, "--url", url or f"http://127.0.0.1:{self.port}/", "--http2", "--closed",
               "--quiet", "--timeout", "5s", "--drain", "5s", "--json", out] + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if not os.path.exists(out):
            raise AssertionError(f"meridian-load wrote no result (exit {r.returncode}): {r.stderr}{r.stdout}")
        with open(out) as f:
            return json.load(f), r

    def access_lines(self):
        lines = []
        with open(self.log_path) as f:
            for line in f:
                if line.startswith("{"):
                    try:
                        lines.append(json.loads(line))
                    except ValueError:
                        pass
        return lines


def streamed_ok(res, n, tokens_each, what):
    expect(res["completed"] == n and res["failed"] == 0,
           f"{what}: {res['completed']} completed, {res['failed']} failed (errors {res.get('errors')})")
    expect(res["protocol"] == "h2", f"{what}: protocol {res['protocol']}")
    expect(res["total_output_tokens"] == n * tokens_each,
           f"{what}: {res['total_output_tokens']} tokens, wanted {n * tokens_each}")
    expect(res["mean_ttft_ms"] > 0 and res["p99_ttft_ms"] >= res["median_ttft_ms"] > 0,
           f"{what}: no TTFT ({res['mean_ttft_ms']})")
    expect(res["mean_itl_ms"] > 0 and res["mean_tpot_ms"] > 0, f"{what}: no ITL/TPOT")
    expect(res["median_ttft_ms"] < res["median_e2el_ms"], f"{what}: TTFT not before the last token")


CASES = []


def case(fn):
    CASES.append(fn)
    return fn


@case
def openai_h2c(rig):
    before = len(rig.access_lines())
    conns_before = metric(http_get(rig.admin, "/metrics")[1], "meridian_downstream_connections_total")
    res, _ = rig.run_load("--connections", "2", "--streams", "8", "--requests", "80", "--openai", "chat",
                          "--stream", "--max-tokens", "fixed:6", "--prompt-tokens", "fixed:32")
    streamed_ok(res, 80, 6, "h2c")
    time.sleep(0.3)
    lines = [l for l in rig.access_lines()[before:] if l.get("path") == "/v1/chat/completions"]
    h2 = [l for l in lines if l.get("protocol") == "h2" and l.get("status") == 200]
    expect(len(h2) == 80, f"the gateway logged {len(h2)} h2 requests with 200 of 80 ({len(lines)} lines)")
    conns = metric(http_get(rig.admin, "/metrics")[1], "meridian_downstream_connections_total") - conns_before
    expect(conns <= 2, f"the gateway counted {conns} new connections for 2 h2 connections")
    return (f"80/80 streamed over 2 connections x 8 streams, TTFT p50 {res['median_ttft_ms']:.1f} ms, "
            f"ITL mean {res['mean_itl_ms']:.2f} ms; gateway: 80 h2 log lines, {conns:.0f} connections")


@case
def openai_h2_tls(rig):
    url = f"https://127.0.0.1:{rig.tls_port}/"
    res, _ = rig.run_load("--connections", "1", "--streams", "10", "--requests", "30", "--openai", "chat",
                          "--stream", "--max-tokens", "fixed:6", "--cacert", rig.cert, url=url)
    streamed_ok(res, 30, 6, "h2 over TLS")
    refused, r = rig.run_load("--connections", "1", "--streams", "2", "--requests", "4", "--openai", "chat",
                              "--cacert", rig.cert, url=f"https://127.0.0.1:{rig.h1_port}/")
    # The listener refuses an offer of h2 alone with TLS's no_application_protocol alert (RFC 7301).
    why = refused["tls_handshake_error"]
    expect(refused["completed"] == 0 and refused["failed"] == 4 and "no application protocol" in why,
           f"an http/1.1-only listener: {refused['completed']} completed; {why}")
    return f"30/30 over TLS (ALPN h2); an http/1.1-only listener: 4/4 refused ({why})"


@case
def kserve_stream(rig):
    out = []
    for name, url in (("through the gateway", None), ("straight to the engine", f"http://127.0.0.1:{rig.mock_grpc}/")):
        res, _ = rig.run_load("--connections", "2", "--streams", "5", "--requests", "40", "--kserve", "--stream",
                              "--model", "mock-llm", url=url)
        streamed_ok(res, 40, 6, f"ModelStreamInfer {name}")
        out.append(f"{name}: 40/40, first message p50 {res['median_ttft_ms']:.1f} ms")
    res, _ = rig.run_load("--connections", "1", "--streams", "4", "--requests", "20", "--kserve", "--model", "mock-llm")
    expect(res["completed"] == 20 and res["failed"] == 0, f"ModelInfer: {res['completed']} completed {res.get('errors')}")
    out.append("ModelInfer 20/20")
    return "; ".join(out)


@case
def kserve_status(rig):
    res, _ = rig.run_load("--connections", "1", "--streams", "4", "--requests", "12", "--kserve", "--stream",
                          "--model", "no-such-model", url=f"http://127.0.0.1:{rig.mock_grpc}/")
    expect(res["completed"] == 0 and res["failed"] == 12 and res["errors"].get("grpc_status") == 12,
           f"an unknown model: {res['completed']} completed, errors {res['errors']}")
    return "12/12 calls for an unknown model counted as grpc_status errors"


@case
def timeout(rig):
    # 200 tokens at 3 ms each outlast a 0.3 s timeout; the short ones on the same connection finish.
    res, _ = rig.run_load("--connections", "1", "--streams", "4", "--requests", "8", "--openai", "chat",
                          "--stream", "--max-tokens", "fixed:200", "--timeout", "0.3s")
    expect(res["failed"] == 8 and res["errors"].get("timeout") == 8,
           f"long streams: {res['completed']} completed, errors {res['errors']}")
    res, _ = rig.run_load("--connections", "1", "--streams", "4", "--requests", "8", "--openai", "chat",
                          "--stream", "--max-tokens", "fixed:6", "--timeout", "2s")
    expect(res["completed"] == 8, f"after the timeouts: {res['completed']} of 8 completed, errors {res['errors']}")
    return "8/8 long streams timed out at 0.3 s (cancelled), then 8/8 short ones completed"


def main():
    meridian, mock, load = sys.argv[1:4]
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    with tempfile.TemporaryDirectory(prefix="meridian-h2-load-") as tmp:
        rig = Rig(meridian, mock, load, tmp)
        try:
            ran, failed = run_cases(CASES, rig, only)
        finally:
            rig.close()
        if failed:
            with open(rig.log_path) as f:
                print("gateway log tail:\n" + "".join(f.readlines()[-20:]))
    print(f"{ran - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
