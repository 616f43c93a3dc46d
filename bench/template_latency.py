#!/usr/bin/env python3
"""Template propagation, the measuring half of bench/template.sh (which starts the processes).

    template_latency.py agent  --store URL --dest FILE --nginx PORT --backends A=PORT,B=PORT --n N
    template_latency.py reload --dest FILE --nginx PORT --backends A=PORT,B=PORT --n N
                               --reload CMD --check CMD
    template_latency.py report RESULTS

`agent` (the agent running, `wait.min = 0`): N registrations, then N traffic policy changes,
each timed from the store's acknowledgement (the PUT's response read) to
  - the rendered file on disk holding the change (inotify on the file's directory, IN_MOVED_TO
    and IN_CLOSE_WRITE, then a read; a 0.5 ms stat/read loop if inotify is unavailable), and
  - nginx serving the new backend (a tight loop of GET / through nginx, one connection each,
    until the new backend's body comes back).
A registration adds an instance on the backend not in the upstream, then (untimed) deletes the
previous one. A traffic change flips weight overrides of two instances between 100 and 0: the
one at 0 is rendered `backup`, so every request reaches the one at 100.
`reload` (the agent stopped): N times, the upstream file is switched by hand (atomic rename) to
the other backend, and the time from running `nginx -s reload` to nginx serving it is taken;
`nginx -t` (the agent's check) is timed on its own each round.
Between rounds each phase waits, untimed, until 10 requests in a row reach the new backend, so
an old worker still draining cannot pass for the next change. Every phase prints one JSON line;
`report` turns the lines into the markdown table.
"""

import argparse
import ctypes
import http.client
import json
import os
import select
import shlex
import subprocess
import sys
import time
import urllib.request

TIMEOUT = 10.0
SETTLE = 10
IN_CLOSE_WRITE, IN_MOVED_TO = 0x08, 0x80


class FileWaiter:
    """Waits for a file to satisfy a predicate, woken by inotify on its directory."""

    def __init__(self, path):
        self.path = path
        self.fd = -1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0 and libc.inotify_add_watch(
                    fd, os.path.dirname(path).encode(), IN_CLOSE_WRITE | IN_MOVED_TO) >= 0:
                self.fd = fd
            elif fd >= 0:
                os.close(fd)
        except (OSError, AttributeError):
            self.fd = -1
        self.mode = "inotify" if self.fd >= 0 else "poll"

    def text(self):
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def drain(self):
        if self.fd >= 0:
            try:
                while os.read(self.fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def wait(self, pred, what):
        """The monotonic time at which the file first satisfied `pred`."""
        end = time.monotonic() + TIMEOUT
        while True:
            # Drain before reading: an event after the read then wakes the select below.
            self.drain()
            text = self.text()
            if pred(text):
                return time.monotonic()
            left = end - time.monotonic()
            if left <= 0:
                sys.exit(f"{self.path}: not {what} within {TIMEOUT:g} s:\n{text}")
            if self.fd >= 0:
                select.select([self.fd], [], [], left)
            else:
                time.sleep(0.0005)


def fetch(port):
    """The body of GET / through nginx, stripped; '' on any failure."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read().decode(errors="replace").strip()
        return body if r.status == 200 else f"status {r.status}"
    except OSError:
        return ""
    finally:
        c.close()


def wait_serving(port, want):
    """The monotonic time of the first response from backend `want` through nginx."""
    end = time.monotonic() + TIMEOUT
    seen = {}
    while True:
        body = fetch(port)
        if body == want:
            return time.monotonic()
        seen[body] = seen.get(body, 0) + 1
        if time.monotonic() > end:
            sys.exit(f"nginx :{port}: {want} not reached within {TIMEOUT:g} s, got {seen}")


def settle(port, want):
    """Waits until SETTLE requests in a row reach `want` (old workers gone)."""
    end = time.monotonic() + TIMEOUT
    row = 0
    while row < SETTLE:
        row = row + 1 if fetch(port) == want else 0
        if time.monotonic() > end:
            sys.exit(f"nginx :{port}: not only {want} within {TIMEOUT:g} s")


def request(store, method, path, body=None):
    """Sends one store API request; returns the monotonic time its response was read."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(store + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()
    return time.monotonic()


def instance(port, version="v1"):
    """An instance of `web` on 127.0.0.1:PORT in dc1, as the store API takes it."""
    return {"address": "127.0.0.1", "port": port, "datacenter": "dc1", "node": "bench",
            "version": version, "status": "passing"}


def line_of(text, port):
    """The upstream's `server` line for 127.0.0.1:PORT, or ''."""
    for line in text.splitlines():
        if f"server 127.0.0.1:{port} " in line:
            return line
    return ""


def backends(spec):
    """`A=PORT,B=PORT` as [(name, port), ...]."""
    out = []
    for part in spec.split(","):
        name, _, port = part.partition("=")
        if not name or not port.isdigit():
            sys.exit(f"--backends: {part!r} is not NAME=PORT")
        out.append((name, int(port)))
    if len(out) != 2:
        sys.exit("--backends: exactly two backends are needed")
    return out


def registrations(a, fw, store, port, bk):
    """N registrations: each adds instance rK on the backend not in the upstream."""
    file_ms, serve_ms = [], []
    # r0 (on the first backend) is registered by bench/template.sh before the agent starts.
    prev = "r0"
    for k in range(1, a.n + 1):
        name, bport = bk[k % 2]
        iid = f"r{k}"
        t0 = request(store, "PUT", f"/v1/services/web/instances/{iid}", instance(bport))
        tf = fw.wait(lambda t, iid=iid: f"# {iid} " in t, f"holding {iid}")
        ts = wait_serving(port, name)
        file_ms.append((tf - t0) * 1000)
        serve_ms.append((ts - t0) * 1000)
        # Untimed: back to one instance, so that the next one's backend is not served yet.
        request(store, "DELETE", f"/v1/services/web/instances/{prev}")
        fw.wait(lambda t, prev=prev: f"# {prev} " not in t and f"# {iid} " in t, f"without {prev}")
        settle(port, name)
        prev = iid
    request(store, "DELETE", f"/v1/services/web/instances/{prev}")
    return file_ms, serve_ms


def traffic(a, fw, store, port, bk):
    """N policy changes: weight overrides of ta/tb flip between 100 and 0."""
    (na, pa), (nb, pb) = bk
    for iid, p in (("ta", pa), ("tb", pb)):
        request(store, "PUT", f"/v1/services/web/instances/{iid}", instance(p))

    def policy(up):
        """Weight 100 for `up`, 0 (rendered `backup`) for the other."""
        return {"overrides": {"ta": {"weight": 100 if up == "ta" else 0},
                              "tb": {"weight": 100 if up == "tb" else 0}}}

    def primary(text, up_port, down_port):
        """Whether the upstream sends everything to UP_PORT, DOWN_PORT only as backup."""
        up, down = line_of(text, up_port), line_of(text, down_port)
        return up != "" and "backup" not in up and "backup" in down

    request(store, "PUT", "/v1/traffic/web", policy("ta"))
    fw.wait(lambda t: primary(t, pa, pb), "weighted to ta")
    settle(port, na)
    file_ms, serve_ms = [], []
    for k in range(a.n):
        up, name, up_port, down_port = ("tb", nb, pb, pa) if k % 2 == 0 else ("ta", na, pa, pb)
        t0 = request(store, "PUT", "/v1/traffic/web", policy(up))
        tf = fw.wait(lambda t, u=up_port, d=down_port: primary(t, u, d), f"weighted to {up}")
        ts = wait_serving(port, name)
        file_ms.append((tf - t0) * 1000)
        serve_ms.append((ts - t0) * 1000)
        settle(port, name)
    return file_ms, serve_ms


def run_agent(a):
    """The `agent` subcommand: registrations, then traffic changes; one JSON line each."""
    store = a.store.rstrip("/")
    bk = backends(a.backends)
    fw = FileWaiter(a.dest)
    fw.wait(lambda t: "# r0 " in t, "rendered by the agent (r0)")
    settle(a.nginx, bk[0][0])
    reg = registrations(a, fw, store, a.nginx, bk)
    pol = traffic(a, fw, store, a.nginx, bk)
    for kind, (f, s) in (("registration", reg), ("traffic", pol)):
        print(json.dumps({"phase": kind, "file_ms": f, "serve_ms": s, "watch": fw.mode}))


def run_reload(a):
    """The `reload` subcommand: nginx alone, `nginx -t` and `nginx -s reload` timed apart."""
    bk = backends(a.backends)
    reload_cmd, check_cmd = shlex.split(a.reload), shlex.split(a.check)
    tmp = a.dest + ".bench-tmp"
    reload_ms, check_ms = [], []
    for k in range(a.n + 1):
        name, bport = bk[(k + 1) % 2]
        with open(tmp, "w") as f:
            f.write(f"# written by bench/template_latency.py\nupstream web {{\n"
                    f"    server 127.0.0.1:{bport} weight=100;  # {name}\n}}\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, a.dest)
        t0 = time.monotonic()
        subprocess.run(check_cmd, check=True)
        t1 = time.monotonic()
        subprocess.run(reload_cmd, check=True)
        ts = wait_serving(a.nginx, name)
        settle(a.nginx, name)
        # Round 0 only moves nginx off whatever the agent last rendered.
        if k > 0:
            check_ms.append((t1 - t0) * 1000)
            reload_ms.append((ts - t1) * 1000)
    print(json.dumps({"phase": "reload", "serve_ms": reload_ms, "check_ms": check_ms}))


def pct(vals, p):
    """Nearest-rank percentile of `vals` (sorted here)."""
    s = sorted(vals)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, -(-p * len(s) // 100) - 1))]


def run_report(a):
    """The `report` subcommand: the markdown block from the results file."""
    meta, phases = {}, {}
    with open(a.results) as f:
        for line in f:
            if line.startswith("meta "):
                k, _, v = line[5:].strip().partition("=")
                meta[k] = v
            elif line.startswith("{"):
                d = json.loads(line)
                phases[d["phase"]] = d
    for need in ("registration", "traffic", "reload"):
        if need not in phases:
            sys.exit(f"{a.results}: no {need} phase")
    rel = phases["reload"]["serve_ms"]
    rel99 = pct(rel, 99)

    def stats(v):
        return f"{len(v)} | {pct(v, 50):.1f} | {pct(v, 99):.1f} | {max(v):.1f}"

    def verdict(v, limit):
        return "met" if pct(v, 99) < limit else "**not met**"

    out = [f"### Template propagation, {meta.get('date', '?')}", "",
           f"- command: `{meta.get('cmd', '?')}`",
           f"- commit {meta.get('commit', '?')}; nproc {meta.get('nproc', '?')}; "
           f"kernel {meta.get('kernel', '?')}; {meta.get('nginx', 'nginx ?')}; one store node; "
           f"file watched by {phases['registration'].get('watch', '?')}",
           f"- {meta.get('load_start', '')} (start); {meta.get('load_end', '')} (end)",
           f"- agent: {meta.get('agent_template', '?')}; its log: "
           f"{meta.get('agent_log_warnings', '?')} WARN/ERROR lines "
           "(0 expected; keep the scratch dir with KEEP=1 to read them)", "",
           "All times in ms, from the store's acknowledgement of the change (its PUT answered) "
           "unless said otherwise.", "",
           "| change | until | n | p50 | p99 | max | target (p99) |",
           "|---|---|---|---|---|---|---|"]
    for kind, label in (("registration", "registration (new instance)"),
                        ("traffic", "traffic policy (weights)")):
        d = phases[kind]
        out.append(f"| {label} | rendered file on disk | {stats(d['file_ms'])} | "
                   f"< 50: {verdict(d['file_ms'], 50)} |")
        out.append(f"| {label} | nginx serving the new backend | {stats(d['serve_ms'])} | "
                   f"< 100 + reload p99 = {100 + rel99:.1f}: {verdict(d['serve_ms'], 100 + rel99)} |")
    out.append(f"| nginx alone, no agent | `nginx -s reload` run -> new workers serving | "
               f"{stats(rel)} | (reported apart) |")
    out.append(f"| nginx alone, no agent | `nginx -t` (the agent's check) | "
               f"{stats(phases['reload']['check_ms'])} | (part of the 100 ms) |")
    print("\n".join(out))


def main():
    """Parses the command line and runs the subcommand."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ag = sub.add_parser("agent")
    ag.add_argument("--store", required=True)
    rl = sub.add_parser("reload")
    rl.add_argument("--reload", required=True)
    rl.add_argument("--check", required=True)
    for p in (ag, rl):
        p.add_argument("--dest", required=True)
        p.add_argument("--nginx", type=int, required=True)
        p.add_argument("--backends", required=True)
        p.add_argument("--n", type=int, default=200)
    rp = sub.add_parser("report")
    rp.add_argument("results")
    a = ap.parse_args()
    if getattr(a, "n", 1) < 1:
        sys.exit("--n: must be at least 1")
    {"agent": run_agent, "reload": run_reload, "report": run_report}[a.cmd](a)


if __name__ == "__main__":
    main()
