#!/usr/bin/env python3
"""Propagation: from the acknowledgement of a change in the store to the changed answer at the
gateway, over N changes of each kind (registration, health change, traffic shift); prints
p50/p99 per kind. Queries are raw UDP packets (no dig process per poll).
  dns_propagation.py STORE_URL DNS_HOST DNS_PORT [N] [LABEL]
LABEL (default "gateway") names the server in the output and prefixes the service names, so runs
against several servers on one store do not reuse each other's services.
"""
import json, socket, struct, sys, time, urllib.request

store, host, port = sys.argv[1].rstrip("/"), sys.argv[2], int(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 200
label = sys.argv[5] if len(sys.argv) > 5 else "gateway"
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1.0)


def put(path, body):
    req = urllib.request.Request(store + path, data=json.dumps(body).encode(), method="PUT",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def addrs(name):
    """The A records of NAME.ns.corp, as a sorted list of dotted quads."""
    qid = int(time.monotonic_ns() & 0xFFFF)
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    for label in (name + ".ns.corp").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    sock.sendto(q, (host, port))
    data = sock.recv(4096)
    an = struct.unpack(">H", data[6:8])[0]
    i = len(q)
    out = []
    for _ in range(an):
        i += 2 if data[i] & 0xC0 == 0xC0 else data.index(b"\0", i) + 1 - i
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[i:i + 10])
        i += 10
        if rtype == 1:
            out.append(".".join(map(str, data[i:i + 4])))
        i += rdlen
    return sorted(out)


def wait(name, want):
    t0 = time.monotonic()
    while addrs(name) != want:
        if time.monotonic() - t0 > 10:
            raise SystemExit(f"{name}: no change within 10 s")
    return time.monotonic()


def inst(ip, dc, status="passing"):
    return {"address": ip, "port": 80, "datacenter": dc, "node": "h", "status": status}


def report(kind, lat):
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    print(f"propagation {label} {kind}: n={len(lat)} p50={p(0.5):.1f} ms p99={p(0.99):.1f} ms")


put("/v1/datacenters/dc1", {"subnets": ["127.0.0.0/8"]})
put("/v1/datacenters/dc2", {"subnets": ["10.250.0.0/16"]})
reg, health, shift = [], [], []
for k in range(n):
    name = f"prop-{label}-{k}"
    put(f"/v1/services/{name}/instances/a", inst("10.9.0.1", "dc1"))
    t = time.monotonic()
    reg.append(wait(name, ["10.9.0.1"]) - t)
    put(f"/v1/services/{name}/instances/b", inst("10.9.0.2", "dc1"))
    wait(name, ["10.9.0.1", "10.9.0.2"])
    put(f"/v1/services/{name}/instances/a", inst("10.9.0.1", "dc1", "critical"))
    t = time.monotonic()
    health.append(wait(name, ["10.9.0.2"]) - t)
    put(f"/v1/services/{name}/instances/c", inst("10.9.0.3", "dc2"))
    put(f"/v1/traffic/{name}", {"shifts": [{"from_dc": "dc1", "to_dc": "dc2", "percent": 100}]})
    t = time.monotonic()
    shift.append(wait(name, ["10.9.0.3"]) - t)
report("registration", reg)
report("health", health)
report("shift", shift)
