#!/usr/bin/env python3
"""Register the peers' generated ns.corp zone (zone.db: NAME TTL IN A IP) in a pyxis store
through the typed API, so the gateway serves the same 1,000 names as Knot and Unbound.

Every tenth name gets a gray policy (v1 90 / v2 10) with a third of its instances on v2.
  dns_register.py STORE_URL ZONE_DB
"""
import json, sys, urllib.request

store, zone_db = sys.argv[1].rstrip("/"), sys.argv[2]


def put(path, body):
    req = urllib.request.Request(store + path, data=json.dumps(body).encode(), method="PUT",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


names = {}
for line in open(zone_db):
    f = line.split()
    if len(f) == 5 and f[3] == "A":
        name = f[0].rstrip(".").split(".")[0]
        names.setdefault(name, []).append(f[4])
put("/v1/datacenters/dc1", {"subnets": ["127.0.0.0/8"]})
for i, (name, ips) in enumerate(sorted(names.items())):
    put(f"/v1/services/{name}", {"ttl_secs": 30})
    gray = i % 10 == 0
    for j, ip in enumerate(ips):
        version = "v2" if gray and j % 3 == 0 else "v1"
        put(f"/v1/services/{name}/instances/i{j}",
            {"address": ip, "port": 80, "datacenter": "dc1", "node": f"h{j}", "version": version})
    if gray:
        put(f"/v1/traffic/{name}", {"groups": [{"version": "v1", "weight": 90},
                                               {"version": "v2", "weight": 10}]})
print(f"registered {len(names)} names, {sum(map(len, names.values()))} instances")
