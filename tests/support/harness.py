"""What the Python end-to-end checks share (tests/h2/load_check.py, tests/tenants/*.py): ports,
waiting for a server, plain HTTP requests, Prometheus samples, and running named cases that each
return what they saw or raise what went wrong. Standard library only (/usr/bin/python3)."""
import http.client
import socket
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, what, proc=None, seconds=15):
    """Until 127.0.0.1:port accepts; raises naming `what` if `proc` exits or time runs out."""
    end = time.time() + seconds
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


def http_get(port, path, timeout=5):
    """(status, body as text) of GET path on 127.0.0.1:port."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    data = r.read().decode(errors="replace")
    c.close()
    return r.status, data


def metric(text, name):
    """The sum of a Prometheus family's samples in exposition `text` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.split()[-1])
    return total


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def wait_for(pred, seconds, what):
    """Polls `pred` until it holds (returns the time it did) or raises `what`."""
    end = time.time() + seconds
    while time.time() < end:
        if pred():
            return time.time()
        time.sleep(0.05)
    raise AssertionError(what)


def run_cases(cases, rig, only=None):
    """Runs each case (a function of the rig returning what it saw), printing PASS or FAIL with
    it; returns (ran, failed)."""
    ran = failed = 0
    for fn in cases:
        if only and fn.__name__ != only:
            continue
        ran += 1
        try:
            print(f"PASS {fn.__name__}: {fn(rig)}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every case
            failed += 1
            print(f"FAIL {fn.__name__}: {e}", flush=True)
    return ran, failed
