#!/usr/bin/python3
"""Tenant limits shared by two gateway replicas through a real redis-server (Debian package):
a burst split 70/30 over the replicas gets about the limit accepted in all, not the limit per
replica; Redis killed: no request waits, each replica says store_up 0; Redis back: store_up 1
within 2 s. Exits 77 (skipped, with the reason) where redis-server is not installed.

usage: shared_check.py MERIDIAN MERIDIAN_MOCK
"""
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from harness import expect, free_port, http_get, wait_for, wait_port  # noqa: E402


def gauge(port, name):
    for line in http_get(port, "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def chat(port, key):
    body = json.dumps({"model": "mock-llm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    t0 = time.time()
    c.request("POST", "/v1/chat/completions", body, {"authorization": f"Bearer {key}",
                                                      "content-type": "application/json"})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, time.time() - t0


def main():
    meridian, mock = sys.argv[1], sys.argv[2]
    redis = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if not redis:
        print("SKIP: redis-server is not installed (Debian: apt-get install redis-server; .ci/deps installs it)")
        return 77
    procs = []
    failed = 0
    with tempfile.TemporaryDirectory(prefix="meridian-shared-") as tmp:
        rport, mport = free_port(), free_port()
        start_redis = lambda: subprocess.Popen(  # noqa: E731
            [redis, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rds = start_redis()
        procs.append(rds)
        procs.append(subprocess.Popen([mock, "llm", "--listen", f"127.0.0.1:{mport}", "--decode-ms", "1"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        key = "sk-shared-tenant"
        with open(os.path.join(tmp, "keys.yaml"), "w") as f:
            f.write(f'tenants:\n  - {{ name: shared, keys: [ "sha256:{hashlib.sha256(key.encode()).hexdigest()}" ], '
                    "limits: { requests_per_minute: 60 } }\n")
        gws = []
        for name in ("a", "b"):
            port, admin = free_port(), free_port()
            cfg = os.path.join(tmp, f"gw-{name}.yaml")
            with open(cfg, "w") as f:
                f.write(f"""
listeners: [ {{ name: public, address: 127.0.0.1:{port} }} ]
admin: {{ address: 127.0.0.1:{admin} }}
workers: 1
access_log: false
clusters: [ {{ name: llm, kind: inference, endpoints: [ 127.0.0.1:{mport} ] }} ]
routes: [ {{ match: {{ path_prefix: / }}, cluster: llm }} ]
tenants:
  keys_file: {tmp}/keys.yaml
  redis: {{ address: 127.0.0.1:{rport}, prefix: "test:", sync_interval: 100ms }}
""")
            log = open(os.path.join(tmp, f"gw-{name}.log"), "w")
            p = subprocess.Popen([meridian, "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
            procs.append(p)
            gws.append((port, admin, p, os.path.join(tmp, f"gw-{name}.log")))
        try:
            for port, admin, p, _ in gws:
                wait_port(port, "a gateway", p)
                wait_port(admin, "a gateway's admin", p)
            wait_port(rport, "redis-server", rds)
            wait_for(lambda: all(gauge(a, "meridian_tenant_store_up") == 1 and
                                 gauge(a, "meridian_tenant_replicas") == 2 for _, a, _, _ in gws),
                     5, "the replicas did not both sync through Redis")

            # A burst split 70/30 over the replicas, three clients at a time on each.
            results = {0: [], 1: []}
            lock = threading.Lock()

            def client(which, n):
                for _ in range(n):
                    st, _ = chat(gws[which][0], key)
                    with lock:
                        results[which].append(st)
                    time.sleep(0.02)
            threads = [threading.Thread(target=client, args=(0, 70 // 5)) for _ in range(5)] + \
                      [threading.Thread(target=client, args=(1, 30 // 3)) for _ in range(3)]
            t0 = time.time()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.time() - t0
            ok = [sum(1 for s in results[i] if s == 200) for i in (0, 1)]
            allowance = 60 + took  # the bucket, and what refilled meanwhile (1 a second)
            # A burst that moves the shares while it runs overshoots by what the replica whose
            # share fell had already taken beyond its new share (its debt, repaid later): seen
            # 63-69 here. Each replica on its own would allow 60, 120 together.
            expect(sum(ok) <= allowance * 1.25 and sum(ok) >= 60 * 0.8,
                   f"accepted {ok[0]} + {ok[1]} = {sum(ok)} of 100 in {took:.1f} s; "
                   f"the limit allows about {allowance:.0f} in all")
            print(f"PASS burst: 70/30 over two replicas at 60 req/min: {ok[0]} + {ok[1]} = {sum(ok)} accepted "
                  f"in {took:.1f} s (about {allowance:.0f} allowed in all; each replica alone would allow 60)")

            rds.kill()
            rds.wait()
            wait_for(lambda: all(gauge(a, "meridian_tenant_store_up") == 0 for _, a, _, _ in gws), 3,
                     "store_up did not fall to 0 with Redis killed")
            worst = max(chat(gws[i][0], key)[1] for i in (0, 1, 0, 1))
            expect(worst < 0.1, f"a request took {worst * 1000:.0f} ms with Redis down")
            logged = open(gws[0][3]).read()
            expect("is unreachable" in logged, "no log line for the lost store")
            print(f"PASS down: store_up 0 on both, requests answered at once (slowest {worst * 1000:.1f} ms), logged")

            rds = start_redis()
            procs.append(rds)
            back = time.time()
            wait_port(rport, "redis-server again")
            at = wait_for(lambda: all(gauge(a, "meridian_tenant_store_up") == 1 for _, a, _, _ in gws), 5,
                          "store_up did not come back within 5 s of Redis")
            expect(at - back <= 2.0, f"resynced {at - back:.2f} s after Redis returned")
            print(f"PASS back: store_up 1 on both {at - back:.2f} s after Redis returned")
        except Exception as e:  # noqa: BLE001
            failed = 1
            print(f"FAIL: {e}")
            for _, _, _, path in gws:
                print(f"--- {path}:\n" + "".join(open(path).readlines()[-10:]))
        finally:
            for p in procs:
                p.kill()
                p.wait()
    print("passed" if not failed else "failed")
    return failed


if __name__ == "__main__":
    sys.exit(main())
