#!/usr/bin/python3
"""Tenants end to end: the gateway (the binary given) in front of meridian-mock's LLM engine,
driven with plain HTTP clients, each case checked against what the client got (status, OpenAI
error shape, rate-limit headers), what the engine served (its request counter) and what the
gateway reports (/admin/tenants, /metrics, the access log). Bounded: about 20 s in all.

usage: tenants_check.py MERIDIAN MERIDIAN_MOCK [--only NAME]
"""
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from harness import expect, free_port, http_get, run_cases, wait_port  # noqa: E402


def key_hash(key):
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


KEYS = """tenants:
  - name: team-a
    keys: [ "{a}" ]
    models: [ "mock-*" ]
    limits: {{ requests_per_minute: 4, tokens_per_minute: 100000 }}
  - name: team-b
    keys: [ "{b}" ]
    models: [ other-model ]
  - name: team-c
    keys: [ "{c}" ]
    subjects: [ "CN=svc-team-c,O=Meridian Test" ]
    limits: {{ concurrent: 1, tokens_per_minute: 1200 }}
{extra}"""


class Rig:
    def __init__(self, meridian, mock, tmp):
        self.meridian, self.tmp = meridian, tmp
        self.mock_port, self.port, self.admin, self.tls_port = (free_port() for _ in range(4))
        self.make_certificates()
        self.mock = subprocess.Popen([mock, "llm", "--listen", f"127.0.0.1:{self.mock_port}",
                                      "--default-max-tokens", "8", "--decode-ms", "2"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.keys = os.path.join(tmp, "keys.yaml")
        self.write_keys()
        self.cfg = os.path.join(tmp, "gateway.yaml")
        self.write_config(hide=False)
        self.log_path = os.path.join(tmp, "gateway.log")
        self.log = open(self.log_path, "w")
        self.gw = subprocess.Popen([meridian, "--config", self.cfg], stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, "the gateway", self.gw)
        wait_port(self.tls_port, "the gateway's mTLS listener", self.gw)
        wait_port(self.mock_port, "the mock", self.mock)

    def make_certificates(self):
        """A CA, the listener's certificate, and client certificates: one a tenant names, one not."""
        def run(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.tmp)
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=Meridian Test CA", "-keyout", "ca.key", "-out", "ca.pem")
        for name, subj in (("server", "/CN=localhost"), ("client", "/O=Meridian Test/CN=svc-team-c"),
                           ("stranger", "/O=Meridian Test/CN=svc-unknown")):
            run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subj,
                "-keyout", f"{name}.key", "-out", f"{name}.csr")
            ext = os.path.join(self.tmp, f"{name}.ext")
            with open(ext, "w") as f:
                f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if name == "server" else "extendedKeyUsage=clientAuth\n")
            run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "1", "-extfile", ext, "-out", f"{name}.pem")

    def write_keys(self, extra=""):
        with open(self.keys + ".tmp", "w") as f:
            f.write(KEYS.format(a=key_hash("sk-team-a"), b=key_hash("sk-team-b"), c=key_hash("sk-team-c"),
                                extra=extra))
        os.rename(self.keys + ".tmp", self.keys)

    def write_config(self, hide):
        with open(self.cfg, "w") as f:
            f.write(f"""
listeners:
  - {{ name: public, address: 127.0.0.1:{self.port} }}
  - name: mtls
    address: 127.0.0.1:{self.tls_port}
    tls: {{ certificates: [ {{ cert: {self.tmp}/server.pem, key: {self.tmp}/server.key }} ],
           client_ca: {self.tmp}/ca.pem }}
admin: {{ address: 127.0.0.1:{self.admin} }}
workers: 2
clusters:
  - {{ name: llm, kind: inference, endpoints: [ 127.0.0.1:{self.mock_port} ] }}
routes:
  - {{ match: {{ path_prefix: / }}, cluster: llm }}
tenants: {{ keys_file: {self.keys}, hide_models: {str(hide).lower()} }}
""")

    def close(self):
        for p in (self.gw, self.mock):
            p.kill()
            p.wait()
        self.log.close()

    def chat(self, key=None, model="mock-llm", max_tokens=8, stream=False, header="authorization"):
        msg = {"model": model, "messages": [{"role": "user", "content": "hello there"}],
               "max_tokens": max_tokens, "stream": stream}
        if stream:
            msg["stream_options"] = {"include_usage": True}
        body = json.dumps(msg)
        headers = {"content-type": "application/json"}
        if key is not None:
            headers[header] = f"Bearer {key}" if header == "authorization" else key
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("POST", "/v1/chat/completions", body, headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def get(self, port, path):
        return http_get(port, path)

    def served(self):
        _, text = self.get(self.mock_port, "/metrics")
        for line in text.splitlines():
            if line.startswith("mock_requests_total "):
                return int(float(line.split()[1]))
        return -1

    def tenant(self, name):
        _, text = self.get(self.admin, "/admin/tenants")
        for t in json.loads(text)["tenants"]:
            if t["name"] == name:
                return t
        return None


def error_of(data):
    e = json.loads(data)["error"]
    expect(set(e) >= {"message", "type", "code"}, f"not OpenAI's error shape: {data!r}")
    return e


CASES = []


def case(fn):
    CASES.append(fn)
    return fn


@case
def keys(rig):
    before = rig.served()
    st, _, data = rig.chat()
    expect(st == 401 and error_of(data)["code"] == "invalid_api_key", f"no key: {st} {data!r}")
    st, _, data = rig.chat("sk-wrong-key-1234")
    expect(st == 401 and error_of(data)["code"] == "invalid_api_key", f"a wrong key: {st} {data!r}")
    expect(b"sk-wrong" not in data, "the answer repeats the key")
    st, _, _ = rig.chat("sk-team-a")
    expect(st == 200, f"team-a's key: {st}")
    st, _, _ = rig.chat("sk-team-a", header="x-api-key")
    expect(st == 200, f"team-a's key as x-api-key: {st}")
    expect(rig.served() - before == 2, f"the engine served {rig.served() - before} of the 2 allowed")
    time.sleep(0.2)
    everything = open(rig.log_path).read() + rig.get(rig.admin, "/admin/tenants")[1] + \
        rig.get(rig.admin, "/metrics")[1] + rig.get(rig.admin, "/admin/config")[1]
    for secret in ("sk-team-a", "sk-wrong-key", key_hash("sk-team-a")[7:]):
        expect(secret not in everything, f"{secret[:12]}... appears in the log, metrics or admin pages")
    logged = [json.loads(l) for l in open(rig.log_path) if l.startswith("{")]
    expect(sum(1 for l in logged if l.get("tenant") == "team-a") == 2, "the access log lacks tenant team-a")
    return "401 invalid_api_key without a key and with a wrong one (neither reached the engine); " \
           "Bearer and x-api-key accepted; no key or hash in the log, /metrics or the admin pages"


@case
def models(rig):
    st, _, data = rig.chat("sk-team-b")
    expect(st == 403 and error_of(data)["code"] == "model_not_allowed", f"team-b on mock-llm: {st} {data!r}")
    rig.write_config(hide=True)
    c = http.client.HTTPConnection("127.0.0.1", rig.admin, timeout=5)
    c.request("POST", "/admin/reload", "")
    r = c.getresponse()
    r.read()
    expect(r.status == 200, f"reload: {r.status}")
    st, _, data = rig.chat("sk-team-b")
    expect(st == 404 and error_of(data)["code"] == "model_not_found", f"hidden: {st} {data!r}")
    rig.write_config(hide=False)
    c = http.client.HTTPConnection("127.0.0.1", rig.admin, timeout=5)
    c.request("POST", "/admin/reload", "")
    c.getresponse().read()
    return "403 model_not_allowed; with hide_models (after a reload) 404 model_not_found"


@case
def request_limit(rig):
    # team-a: 4 requests a minute, 2 used by `keys` (the bucket holds one minute's allowance).
    before = rig.served()
    statuses, last = [], None
    for _ in range(4):
        st, h, data = rig.chat("sk-team-a")
        statuses.append(st)
        last = (st, h, data)
    expect(statuses == [200, 200, 429, 429], f"statuses {statuses}")
    st, h, data = last
    e = error_of(data)
    expect(e["code"] == "rate_limit_exceeded", f"429 code {e}")
    expect(h.get("x-ratelimit-limit-requests") == "4" and h.get("x-ratelimit-remaining-requests") == "0",
           f"429 headers {h}")
    expect(1 <= int(h.get("retry-after", "0")) <= 15, f"Retry-After {h.get('retry-after')}")
    expect(rig.served() - before == 2, f"the engine served {rig.served() - before}, wanted 2")
    t = rig.tenant("team-a")
    expect(t["rate_limited"] == 2 and t["limits"][0]["refused"] == 2, f"/admin/tenants: {t}")
    _, m = rig.get(rig.admin, "/metrics")
    expect('meridian_tenant_rate_limited_total{tenant="team-a",limit="requests_per_minute"} 2' in m,
           "the rate-limited counter")
    expect('meridian_tenant_requests_total{tenant="team-a",code="429"} 2' in m, "requests by code")
    return f"200 200 429 429 at 4/min (2 used before), Retry-After {h['retry-after']} s, " \
           "x-ratelimit-* on the 429, the engine saw only the 2 allowed"


@case
def tokens_settled(rig):
    # team-c: 1,200 tokens a minute. Charged up front: the body's bytes / 4 for the prompt plus
    # max_tokens; settled to the engine's usage (2 prompt + 8 completion tokens), streamed or not.
    out = []
    for stream in (False, True):
        before = rig.tenant("team-c")
        st, h, data = rig.chat("sk-team-c", max_tokens=8, stream=stream)
        expect(st == 200, f"stream={stream}: {st} {data[:200]!r}")
        charged_left = int(h["x-ratelimit-remaining-tokens"])
        time.sleep(0.1)
        t = rig.tenant("team-c")
        left = t["limits"][0]["remaining"]
        expect(left >= charged_left + 20, f"stream={stream}: not settled: {charged_left} left when "
                                          f"charged, {left:.0f} after")
        expect(t["completion_tokens"] - before["completion_tokens"] == 8 and
               t["prompt_tokens"] - before["prompt_tokens"] == 2, f"usage counted: {t}")
        out.append(f"{'streamed' if stream else 'whole'}: {charged_left} left when charged, {left:.0f} after")
    # A request whose estimate alone exceeds the limit never fits: 429 that says so.
    st, _, data = rig.chat("sk-team-c", max_tokens=5000)
    expect(st == 429 and "Request too large" in error_of(data)["message"], f"too large: {st} {data!r}")
    return "; ".join(out) + "; a request larger than the limit: 429 'Request too large'"


@case
def client_certificate(rig):
    # On a mutual-TLS listener a request without a key is named by its verified certificate.
    import ssl
    out = []
    for who, want in (("client", 200), ("stranger", 401)):
        ctx = ssl.create_default_context(cafile=os.path.join(rig.tmp, "ca.pem"))
        ctx.load_cert_chain(os.path.join(rig.tmp, f"{who}.pem"), os.path.join(rig.tmp, f"{who}.key"))
        c = http.client.HTTPSConnection("localhost", rig.tls_port, context=ctx, timeout=10)
        body = json.dumps({"model": "mock-llm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        expect(r.status == want, f"{who}'s certificate without a key: {r.status} {data[:120]!r}")
        out.append(f"{who} {r.status}")
    time.sleep(0.2)
    logged = [json.loads(line) for line in open(rig.log_path) if line.startswith("{")]
    named = [l for l in logged if l.get("tls_client", "").startswith("CN=svc-team-c")]
    expect(named and named[-1].get("tenant") == "team-c", f"the log: {named[-1:]}")
    return "a certificate the keys file lists names team-c (" + ", ".join(out) + ")"


@case
def cancelled_charged_what_it_used(rig):
    # A stream of up to 1,000 tokens (2 ms each) that the client leaves after 0.25 s is charged
    # the tokens it streamed (its events), not the 1,000 it asked for; no usage ever arrived.
    # team-c (1,200 tokens a minute; team-a's requests are spent by now).
    before = rig.tenant("team-c")["completion_tokens"]
    body = json.dumps({"model": "mock-llm", "messages": [{"role": "user", "content": "hi"}],
                       "max_tokens": 1000, "stream": True})
    s = socket.create_connection(("127.0.0.1", rig.port), timeout=5)
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-team-c\r\n"
               f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n{body}").encode())
    s.settimeout(2)
    seen, end = b"", time.time() + 0.25
    while time.time() < end:
        seen += s.recv(65536)
    s.close()
    events = seen.count(b"data: ")
    expect(b" 200 " in seen.split(b"\r\n")[0] and events > 5, f"the stream: {seen[:80]!r}")
    used = None
    for _ in range(40):
        time.sleep(0.05)
        t = rig.tenant("team-c")
        if t["in_flight"] == 0:
            used = t["completion_tokens"] - before
            break
    expect(used is not None, "the cancelled request never ended")
    expect(events - 5 <= used <= events + 60, f"charged {used} completion tokens for {events} events seen")
    return f"left after {events} events: charged {used} completion tokens (1,000 asked)"


@case
def concurrent(rig):
    import threading
    res = {}

    def long_stream():
        res["first"] = rig.chat("sk-team-c", max_tokens=150, stream=True)[0]
    th = threading.Thread(target=long_stream)
    th.start()
    time.sleep(0.15)
    st, h, data = rig.chat("sk-team-c")
    th.join()
    expect(res.get("first") == 200, f"the first: {res}")
    expect(st == 429 and "concurrent" in error_of(data)["message"], f"the second at once: {st} {data!r}")
    st, _, _ = rig.chat("sk-team-c")
    expect(st == 200, f"after the first ended: {st}")
    expect(rig.tenant("team-c")["in_flight"] == 0, "in_flight after all ended")
    return "a second request while one streams: 429 (concurrent 1); after it ended: 200"


@case
def keys_file_change(rig):
    st, _, _ = rig.chat("sk-new-team")
    expect(st == 401, f"before: {st}")
    _, m = rig.get(rig.admin, "/metrics")
    rig.write_keys(f'  - {{ name: team-new, keys: [ "{key_hash("sk-new-team")}" ] }}\n')
    ok = False
    for _ in range(40):  # checked every 2 s
        time.sleep(0.2)
        if rig.chat("sk-new-team")[0] == 200:
            ok = True
            break
    expect(ok, "a key added to the file did not work within 8 s")
    # A broken file keeps the tenants in force.
    with open(rig.keys, "w") as f:
        f.write("tenants:\n  - { name: broken, keys: [ sk-in-clear ] }\n")
    time.sleep(2.6)
    st, _, _ = rig.chat("sk-new-team")
    expect(st == 200, f"after a broken file: {st}")
    log = open(rig.log_path).read()
    expect("does not load, the tenants in force stay" in log and "sk-in-clear" not in log,
           "the broken file's log line")
    return "a key added to the keys file worked within seconds, no reload; a broken file kept the old"


@case
def check_refuses(rig):
    out = []
    for body, want in (("tenants: { keys_file: /nonexistent/keys.yaml }", "cannot read the keys file"),
                       (f"tenants: {{ keys_file: {rig.keys}, redis: {{ address: 127.0.0.1:6379, sync_interval: 1ms }} }}",
                        "must be between 10ms and 5s")):
        path = os.path.join(rig.tmp, "check.yaml")
        with open(path, "w") as f:
            f.write("listeners: [ { name: p, address: 127.0.0.1:1 } ]\nclusters: [ { name: c, endpoints: [ 127.0.0.1:2 ] } ]\n"
                    "routes: [ { match: { path_prefix: / }, cluster: c } ]\n" + body + "\n")
        r = subprocess.run([rig.meridian, "--config", path, "--check"], capture_output=True, text=True)
        expect(r.returncode == 1 and want in r.stderr + r.stdout, f"--check: {r.returncode} {r.stderr}")
        out.append(want)
    r = subprocess.run([rig.meridian, "--hash-key"], input="sk-team-a\n", capture_output=True, text=True)
    expect(r.stdout.strip() == key_hash("sk-team-a"), f"--hash-key: {r.stdout!r}")
    return "--check: " + "; ".join(out) + "; --hash-key prints the file's form"


def main():
    meridian, mock = sys.argv[1], sys.argv[2]
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    with tempfile.TemporaryDirectory(prefix="meridian-tenants-") as tmp:
        rig = Rig(meridian, mock, tmp)
        try:
            ran, failed = run_cases(CASES, rig, only)
        finally:
            rig.close()
        if failed:
            print("gateway log tail:\n" + "".join(open(rig.log_path).readlines()[-15:]))
    print(f"{ran - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
