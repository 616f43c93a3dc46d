#!/usr/bin/env python3
"""Turn the result lines written by bench/kv.sh into one markdown block.

Input lines (one per line, `kind key=value ...`):
  meta KEY=VALUE...                      (value runs to the end of the line)
  sysinfo label=L version=V
  cpu label=L conc=C hz=H puts=N ... leader_ticks=T follower_ticks=T other_ticks=T rps=...
  kv-median label=L op=OP conc=C rps=R p50_ms=X p99_ms=Y err_status=a/b/c ...
"""
import sys

SYSTEMS = [("pyxis", "pyxis-3node"), ("etcd", "etcd-3node")]
# pyxis with ACLs bootstrapped and TLS on (SYSTEMS=pyxis-secure), compared with plain pyxis.
SECURE = ("pyxis-secure", "pyxis-secure-3node")
OPS = [("put", "put"), ("range", "read")]


def fields(rest):
    d = {}
    for kv in rest.split():
        if "=" in kv:
            k, v = kv.split("=", 1)
            d.setdefault(k, v)  # first wins: cpu lines repeat label/conc from wrk
    return d


def fmt_rate(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_ms(x):
    return "—" if x is None else f"{x:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}x"


def main(path):
    meta, version, cpu, kv, window = {}, {}, {}, {}, {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            kind, _, rest = line.partition(" ")
            if kind == "meta":
                k, _, v = rest.partition("=")
                meta[k] = v
            elif kind == "sysinfo":
                d = fields(rest)
                version[d["label"]] = d.get("version", "?")
            elif kind == "cpu":
                d = fields(rest)
                cpu[d["label"]] = d
            elif kind == "window":
                d = fields(rest)
                window[d["label"]] = d
            elif kind == "kv-median":
                d = fields(rest)
                kv[(d["label"], d["op"], d["conc"])] = d

    out = []
    out.append(f"### KV: pyxis vs etcd, 3 nodes each on 127.0.0.1 ({meta.get('date', '?')})")
    out.append("")
    out.append(f"- command: `{meta.get('cmd', '?')}`")
    out.append(
        f"- host: `nproc`={meta.get('nproc', '?')}, kernel {meta.get('kernel', '?')}; "
        f"pyxis commit {meta.get('commit', '?')}; etcd {version.get('etcd-3node', 'not run')}"
    )
    if "pyxis_bin" in meta:
        out.append(f"- pyxis binary: {meta['pyxis_bin']}")
    out.append(f"- before: {meta.get('load_start', '?')}")
    out.append(f"- after: {meta.get('load_end', '?')}")
    foreign = []
    for name, label in SYSTEMS + [SECURE]:
        w = window.get(label)
        if w:
            secs = max(int(w["secs"]), 1)
            pct = int(w["foreign_ticks"]) / int(w["hz"]) / secs * 100
            foreign.append(f"{name} phase {pct:.0f}% of one core ({secs} s)")
    if foreign:
        out.append(
            "- CPU used by other processes while measuring (should be near 0): " + ", ".join(foreign)
        )
    out.append(
        "- load: wrk + shared `load/kv.lua` against the leader; put = new key per request, "
        "256-byte value; read = linearizable GET of one of 1,000 filled keys; "
        "figures are medians over the runs; ratio = pyxis / etcd (higher is better for req/s)"
    )
    out.append("")
    out.append(
        "| op | clients | pyxis req/s | etcd req/s | ratio | pyxis p50 ms | pyxis p99 ms "
        "| etcd p50 ms | etcd p99 ms |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    concs = sorted({int(c) for (_, _, c) in kv}) or [1, 16, 64]
    errors = []
    for op, opname in OPS:
        for c in concs:
            row = {}
            for name, label in SYSTEMS:
                d = kv.get((label, op, str(c)))
                if d is None:
                    row[name] = (None, None, None)
                    continue
                row[name] = (float(d["rps"]), float(d["p50_ms"]), float(d["p99_ms"]))
                errs = d.get("err_status", "0")
                if any(e not in ("0", "") for e in errs.split("/")):
                    errors.append(f"{name} {opname} x{c}: non-2xx responses per run {errs}")
            p, e = row["pyxis"], row["etcd"]
            out.append(
                f"| {opname} | {c} | {fmt_rate(p[0])} | {fmt_rate(e[0])} | {ratio(p[0], e[0])} "
                f"| {fmt_ms(p[1])} | {fmt_ms(p[2])} | {fmt_ms(e[1])} | {fmt_ms(e[2])} |"
            )
    out.append("")

    def us_per_put(label, key):
        d = cpu.get(label)
        if d is None:
            return None
        ticks = sum(int(d[k]) for k in key) if isinstance(key, list) else int(d[key])
        return ticks / int(d["hz"]) * 1e6 / int(d["puts"])

    conc = next((d["conc"] for d in cpu.values()), "16")
    out.append(
        f"| CPU per put, {conc} clients (utime+stime / puts) | pyxis µs | etcd µs | pyxis / etcd |"
    )
    out.append("|---|---|---|---|")
    for title, key in [
        ("leader", "leader_ticks"),
        ("follower", "follower_ticks"),
        ("all 3 members", ["leader_ticks", "follower_ticks", "other_ticks"]),
    ]:
        p, e = us_per_put("pyxis-3node", key), us_per_put("etcd-3node", key)
        f1 = lambda x: "—" if x is None else f"{x:.0f}"  # noqa: E731
        out.append(f"| {title} | {f1(p)} | {f1(e)} | {ratio(p, e)} |")
    rates = {}
    for name, label in SYSTEMS:
        d = cpu.get(label)
        rates[name] = float(d["rps"]) if d else None
    out.append(
        f"| put req/s during that run | {fmt_rate(rates['pyxis'])} | {fmt_rate(rates['etcd'])} "
        f"| {ratio(rates['pyxis'], rates['etcd'])} |"
    )
    details = []
    for name, label in SYSTEMS:
        d = cpu.get(label)
        if d and d.get("err_status", "0") != "0":
            errors.append(f"{name} CPU run: {d['err_status']} non-2xx responses")
        if d:
            details.append(
                f"{name}: {d['puts']} puts (counted from {d['count_from']}, wrk {d['wrk_requests']}), "
                f"ticks leader/follower/other {d['leader_ticks']}/{d['follower_ticks']}/{d['other_ticks']} "
                f"at {d['hz']} Hz"
            )
    if details:
        out.append("")
        out.append("CPU run: " + "; ".join(details) + ".")
    if any(label == SECURE[1] for (label, _, _) in kv):
        out.append("")
        out.extend(secure_table(kv, cpu, concs, errors, us_per_put))
    if errors:
        out.append("")
        out.append("**Errors:** " + "; ".join(errors) + ".")
    print("\n".join(out))


def secure_table(kv, cpu, concs, errors, us_per_put):
    """pyxis with ACLs and TLS on against pyxis with them off, from the same run."""
    plain, secure = SYSTEMS[0][1], SECURE[1]
    out = [
        "ACLs and TLS on (admin token on every request, https to the leader, TLS between "
        "nodes) against both off; ratio = on / off (1.00x = no cost):",
        "",
        "| op | clients | off req/s | on req/s | on / off | off p50 ms | on p50 ms "
        "| off p99 ms | on p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for op, opname in OPS:
        for c in concs:
            a, b = kv.get((plain, op, str(c))), kv.get((secure, op, str(c)))
            if b is not None and any(e not in ("0", "") for e in b.get("err_status", "0").split("/")):
                errors.append(f"pyxis-secure {opname} x{c}: non-2xx responses per run {b['err_status']}")
            g = lambda d, k: None if d is None else float(d[k])  # noqa: E731
            out.append(
                f"| {opname} | {c} | {fmt_rate(g(a, 'rps'))} | {fmt_rate(g(b, 'rps'))} "
                f"| {ratio(g(b, 'rps'), g(a, 'rps'))} | {fmt_ms(g(a, 'p50_ms'))} | {fmt_ms(g(b, 'p50_ms'))} "
                f"| {fmt_ms(g(a, 'p99_ms'))} | {fmt_ms(g(b, 'p99_ms'))} |"
            )
    p, q = us_per_put(plain, "leader_ticks"), us_per_put(secure, "leader_ticks")
    if q is not None:
        f1 = lambda x: "—" if x is None else f"{x:.0f}"  # noqa: E731
        out.append("")
        out.append(f"Leader CPU per put: off {f1(p)} µs, on {f1(q)} µs ({ratio(q, p)}).")
    return out


if __name__ == "__main__":
    main(sys.argv[1])
