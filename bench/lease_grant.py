#!/usr/bin/env python3
"""Grant leases (one key bound to each) or check them, pyxis or etcd.

  lease_grant.py grant --system S --url LEADER --n 10000 --ttl 10 --ids FILE --prefix P [--conc 16]
  lease_grant.py check --system S --url LEADER --ids FILE --prefix P [--sample 200]

grant: CONC threads, each on its own keep-alive connection, grant a lease
(pyxis POST /v1/lease {"ttl_ms"}, etcd POST /v3/lease/grant {"TTL"}) and put
one key PREFIX<i> bound to it (a simulated host's registration); the ids go to
FILE in grant order. check: counts the keys under PREFIX that are still there
(a lease that expired takes its key along) and asks a sample of leases for
their remaining TTL (pyxis GET /v1/lease/ID, etcd /v3/lease/timetolive).
Prints one line of key=value.
"""
import argparse, base64, http.client, json, random, sys, threading, time
from urllib.parse import urlsplit

b64 = lambda s: base64.b64encode(s.encode()).decode()


def conn_for(url):
    u = urlsplit(url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loopback targets only")
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def call(c, method, path, body=None):
    c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    return r.status, data


def grant(a):
    out, lock, errors = [], threading.Lock(), []
    nxt = iter(range(a.n))

    def worker():
        c = conn_for(a.url)
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                return
            key = "%s%05d" % (a.prefix, i)
            if a.system == "pyxis":
                st, d = call(c, "POST", "/v1/lease", json.dumps({"ttl_ms": a.ttl * 1000}))
                lid = json.loads(d)["id"] if st == 200 else None
                st2, _ = call(c, "PUT", "/v1/kv/%s?lease=%s" % (key, lid), b"host-%d" % i) if lid is not None else (0, b"")
            else:
                st, d = call(c, "POST", "/v3/lease/grant", json.dumps({"TTL": a.ttl}))
                lid = json.loads(d).get("ID") if st == 200 else None
                st2, _ = call(c, "POST", "/v3/kv/put", json.dumps({"key": b64(key), "value": b64("host-%d" % i), "lease": lid})) if lid else (0, b"")
            with lock:
                if st != 200 or st2 != 200:
                    errors.append((st, st2, d[:200]))
                else:
                    out.append(str(lid))

    t0 = time.monotonic()
    ths = [threading.Thread(target=worker) for _ in range(a.conc)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    secs = time.monotonic() - t0
    with open(a.ids, "w") as f:
        f.write("\n".join(out) + "\n")
    print("grant system=%s leases=%d errors=%d secs=%.2f rate=%.0f%s" % (
        a.system, len(out), len(errors), secs, len(out) / secs, (" first_error=%r" % (errors[0],)) if errors else ""), flush=True)


def check(a):
    ids = [l.strip() for l in open(a.ids) if l.strip()]
    c = conn_for(a.url)
    if a.system == "pyxis":
        st, d = call(c, "GET", "/v1/kv/%s?prefix=true" % a.prefix)
        v = json.loads(d)
        keys = len(v) if isinstance(v, list) else len(v.get("entries") or [])
    else:
        p = a.prefix
        st, d = call(c, "POST", "/v3/kv/range", json.dumps({"key": b64(p), "range_end": b64(p[:-1] + chr(ord(p[-1]) + 1)), "count_only": True}))
        keys = int(json.loads(d).get("count", 0))
    alive = 0
    ttls = []
    for lid in random.Random(1).sample(ids, min(a.sample, len(ids))):
        if a.system == "pyxis":
            st, d = call(c, "GET", "/v1/lease/%s" % lid)
            if st == 200:
                alive += 1
                ttls.append(json.loads(d).get("ttl_ms", 0) / 1000)
        else:
            st, d = call(c, "POST", "/v3/lease/timetolive", json.dumps({"ID": lid}))
            ttl = int(json.loads(d).get("TTL", -1)) if st == 200 else -1
            if ttl > 0:
                alive += 1
                ttls.append(ttl)
    ttls.sort()
    print("check system=%s leases=%d keys_present=%d sample=%d sample_alive=%d sample_min_ttl_s=%s" % (
        a.system, len(ids), keys, min(a.sample, len(ids)), alive, ("%.1f" % ttls[0]) if ttls else "nan"), flush=True)


p = argparse.ArgumentParser()
p.add_argument("cmd", choices=["grant", "check"])
p.add_argument("--system", choices=["pyxis", "etcd"], required=True)
p.add_argument("--url", required=True)
p.add_argument("--n", type=int, default=10000)
p.add_argument("--ttl", type=int, default=10)
p.add_argument("--conc", type=int, default=16)
p.add_argument("--ids", required=True)
p.add_argument("--prefix", default="bench/hosts/")
p.add_argument("--sample", type=int, default=200)
a = p.parse_args()
grant(a) if a.cmd == "grant" else check(a)
