#!/usr/bin/env python3
"""Turn bench/watch.sh result lines into a markdown block: watch_report.py RESULTS"""
import sys

meta, watch, grant, ka, check, warn = {}, {}, {}, {}, {}, []
for line in open(sys.argv[1]):
    w = line.split()
    if not w:
        continue
    if w[0] == "meta":
        k, _, v = line[5:].strip().partition("=")
        meta[k] = v
        continue
    if w[0] == "warning":
        warn.append(line.strip())
        continue
    d = dict(x.split("=", 1) for x in w[1:] if "=" in x)
    if w[0] == "watch":
        watch[(d["system"], int(d["watchers"]))] = d
    elif w[0] == "grant":
        grant[d["system"]] = d
    elif w[0] == "keepalive":
        ka[d["system"]] = d
    elif w[0] == "check":
        check[d["system"]] = d

f = lambda x: "%.2f" % float(x)
def ratio(a, b):
    try:
        return "%.2fx" % (float(a) / float(b))
    except (ValueError, ZeroDivisionError, TypeError):
        return "-"

out = ["### Watches and leases, %s" % meta.get("date", "?"), "",
       "- command: `%s`" % meta.get("cmd", "?"),
       "- commit %s, %s; etcd %s; nproc %s; kernel %s" % (meta.get("commit"), meta.get("pyxis_bin", "?"), meta.get("etcd", "-"), meta.get("nproc"), meta.get("kernel")),
       "- %s (start); %s (end)" % (meta.get("load_start", ""), meta.get("load_end", ""))]
out += warn
out += ["", "Watch delivery: latency from the put's reply (ack) to the event at the watcher; all times ms; ratio = pyxis / etcd (lower is better).", "",
        "| watchers (timed) | pyxis ack->event p50 | p99 | max | etcd ack->event p50 | p99 | max | p99 ratio | put p50 pyxis / etcd | put p99 pyxis / etcd | missing pyxis / etcd | consumers got all |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
for n in sorted({k[1] for k in watch}):
    p, e = watch.get(("pyxis", n), {}), watch.get(("etcd", n), {})
    g = lambda d, k: f(d[k]) if k in d else "-"
    out.append("| %d (%s) | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s / %s |" % (
        n, (p or e).get("sampled", "?"), g(p, "ack_to_event_p50_ms"), g(p, "ack_to_event_p99_ms"), g(p, "ack_to_event_max_ms"),
        g(e, "ack_to_event_p50_ms"), g(e, "ack_to_event_p99_ms"), g(e, "ack_to_event_max_ms"),
        ratio(p.get("ack_to_event_p99_ms"), e.get("ack_to_event_p99_ms")),
        g(p, "put_p50_ms"), g(e, "put_p50_ms"), g(p, "put_p99_ms"), g(e, "put_p99_ms"),
        p.get("missing", "-"), e.get("missing", "-"), p.get("consumers_full", "-"), e.get("consumers_full", "-")))
out += ["", "Keep-alive load against the leader (leader CPU = its utime+stime over the wrk run, % of one core).", "",
        "| | pyxis | etcd | pyxis / etcd |", "|---|---|---|---|"]
def cpu(s, k):
    d = ka.get(s)
    if not d:
        return None
    return 100.0 * int(d[k]) / int(d["hz"]) / float(d["secs"])
rows = [
    ("leases granted (+1 bound key each), grant rate/s", lambda s: "%s (%s/s)" % (grant[s]["leases"], grant[s]["rate"]) if s in grant else "-", None),
    ("keep-alives sent, rate/s", lambda s: "%s, %s/s" % (ka[s]["requests"], ka[s]["rate"]) if s in ka else "-", None),
    ("keep-alive p50 / p99 ms", lambda s: "%s / %s" % (ka[s]["p50_ms"], ka[s]["p99_ms"]) if s in ka else "-", None),
    ("non-2xx / socket errors", lambda s: "%s / %s" % (ka[s]["non2xx"], ka[s]["sock_err"]) if s in ka else "-", None),
    ("**leader CPU, % of one core**", lambda s: "%.1f%%" % cpu(s, "leader_ticks") if s in ka else "-", "leader_ticks"),
    ("all 3 members CPU, % of one core", lambda s: "%.1f%%" % cpu(s, "members_ticks") if s in ka else "-", "members_ticks"),
    ("whole machine busy, % of one core", lambda s: "%.1f%%" % cpu(s, "busy_ticks") if s in ka else "-", "busy_ticks"),
    ("bound keys still present after", lambda s: "%s / %s" % (check[s]["keys_present"], check[s]["leases"]) if s in check else "-", None),
    ("sampled leases alive after", lambda s: "%s / %s" % (check[s]["sample_alive"], check[s]["sample"]) if s in check else "-", None),
]
for name, fn, k in rows:
    r = ratio(cpu("pyxis", k), cpu("etcd", k)) if k and "pyxis" in ka and "etcd" in ka else ""
    out.append("| %s | %s | %s | %s |" % (name, fn("pyxis"), fn("etcd"), r))
print("\n".join(out))
