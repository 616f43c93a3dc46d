#!/usr/bin/env python3
"""One ns-agent with N services (default 200, 1 s interval, trivial shell checks) against a
one-node pyxis store: the agent's RSS, its own idle CPU, and the time from a failing service's
deciding health check to its removal from the store's `healthy=true` listing.

    cargo build --release -p pyxis -p ns-agent
    python3 bench/agent.py [--services 200] [--idle 30] [--samples 60] [--bin target/release]

CPU is the agent process's own utime+stime (/proc/PID/stat, all threads), so the checks' shells
are not counted, but the fork/exec and pipe work the agent does for them is. The removal latency
is measured from the timestamp the deciding (fail_after-th) failing check writes as it exits to
the moment a 5 ms poll of `GET /v1/services/NAME/instances?healthy=true` no longer lists it, so
it includes up to 5 ms of polling slack. Prints one markdown block.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def wait_line(path, pattern, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                m = re.search(pattern, f.read())
                if m:
                    return m
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    sys.exit(f"{path}: no {pattern!r} within {timeout}s")


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def rss_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checks_run(api):
    """The agent's ns_agent_checks_total, summed over results (None if /metrics is unreachable)."""
    try:
        with urllib.request.urlopen(f"http://{api}/metrics", timeout=5) as r:
            text = r.read().decode()
    except Exception:
        return None
    return sum(float(l.rsplit(None, 1)[1]) for l in text.splitlines() if l.startswith("ns_agent_checks_total"))


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, round(p / 100 * len(sorted_vals)) - 1))
    return sorted_vals[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--interval", default="1s")
    ap.add_argument("--fail-after", type=int, default=2)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of steady state measured")
    ap.add_argument("--samples", type=int, default=60, help="removal latency samples")
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release"))
    args = ap.parse_args()
    pyxis = os.path.join(args.bin, "pyxis")
    agent_bin = os.path.join(args.bin, "ns-agent")
    for b in (pyxis, agent_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} missing: cargo build --release -p pyxis -p ns-agent")
    work = tempfile.mkdtemp(prefix="ns-agent-bench-")
    procs = []
    try:
        store_log = os.path.join(work, "store.log")
        procs.append(subprocess.Popen(
            [pyxis, "server", "--id", "1", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "data")],
            stdout=open(store_log, "w"), stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn,pyxis=info", "NO_COLOR": "1"}))
        store = wait_line(store_log, r"listening http=([0-9.:]+)").group(1)
        for _ in range(200):
            try:
                get_json(f"http://{store}/v1/status")
                break
            except Exception:
                time.sleep(0.05)
        sdir = os.path.join(work, "services.d")
        os.makedirs(os.path.join(sdir, "fail"))
        for i in range(args.services):
            name = f"svc-{i}"
            # The deciding failure is the fail_after-th line of its timestamp file.
            health = (f"if [ -e fail/{name} ]; then date +%s%N >> fail/{name}.ts; exit 2; fi")
            with open(os.path.join(sdir, f"{name}.toml"), "w") as f:
                f.write(f'name = "{name}"\nport = {10000 + i}\n[health]\ninterval = "{args.interval}"\n'
                        f'timeout = "500ms"\nfail_after = {args.fail_after}\npass_after = 1\n'
                        f'[scripts]\nhealth = "{health}"\nstart = "true"\nstop = "true"\n')
        api = f"127.0.0.1:{free_port()}"
        with open(os.path.join(work, "agent.toml"), "w") as f:
            f.write(f'node = "bench"\ndatacenter = "dc1"\nstore = ["{store}"]\nservices_dir = "services.d"\n'
                    f'http = "{api}"\nlease_ttl = "10s"\ndrain = "0s"\n')
        agent_log = os.path.join(work, "agent.log")
        agent = subprocess.Popen([agent_bin, "--config", os.path.join(work, "agent.toml")],
                                 stdout=open(agent_log, "w"), stderr=subprocess.STDOUT,
                                 env={**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1"})
        procs.append(agent)
        # RUST_LOG=warn hides the announce line; find the API through the status of the store.
        start = time.time()
        while True:
            services = get_json(f"http://{store}/v1/services")
            healthy = sum(1 for s in services if s["healthy"] == 1)
            if healthy == args.services:
                break
            if time.time() - start > 120:
                sys.exit(f"only {healthy}/{args.services} registered after 120 s")
            time.sleep(0.2)
        admitted = time.time() - start
        time.sleep(3)  # let the first round of registrations and allocations settle
        clk = os.sysconf("SC_CLK_TCK")
        c0, t0, w0 = checks_run(api), ticks(agent.pid), time.time()
        load0 = open("/proc/loadavg").read().split()[:3]
        time.sleep(args.idle)
        t1, w1, c1 = ticks(agent.pid), time.time(), checks_run(api)
        # Under load the checks run late (and fewer per second): CPU per check is the figure
        # that does not depend on how busy the machine was.
        checks = (c1 - c0) if c0 is not None and c1 is not None else float("nan")
        per_check = (t1 - t0) / clk / checks * 1e6 if checks and checks == checks else float("nan")
        cpu = (t1 - t0) / clk / (w1 - w0) * 100
        mem = rss_kib(agent.pid)

        lat, skipped = [], 0
        for k in range(args.samples):
            name = f"svc-{k % args.services}"
            ts = os.path.join(sdir, "fail", f"{name}.ts")
            if os.path.exists(ts):
                os.remove(ts)
            open(os.path.join(sdir, "fail", name), "w").close()
            url = f"http://{store}/v1/services/{name}/instances?healthy=true"
            deadline = time.time() + 30
            while get_json(url):
                if time.time() > deadline:
                    sys.exit(f"{name} still healthy after 30 s")
                time.sleep(0.005)
            removed = time.time_ns()
            with open(ts) as f:
                stamps = [int(x) for x in f.read().split()]
            os.remove(os.path.join(sdir, "fail", name))
            if len(stamps) < args.fail_after:
                # An earlier check timed out (a loaded machine): it failed without a stamp, so
                # the deciding check is not known; the sample is left out and counted.
                skipped += 1
                continue
            deciding = stamps[args.fail_after - 1]
            lat.append((removed - deciding) / 1e6)
        lat.sort()
        load1 = open("/proc/loadavg").read().split()[:3]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        print(f"### ns-agent, {args.services} services (commit {commit}, {time.strftime('%Y-%m-%dT%H:%M:%S%z')})")
        print()
        print(f"`python3 bench/agent.py --services {args.services} --idle {args.idle:g} --samples {args.samples}`; "
              f"interval {args.interval}, timeout 500ms, fail_after {args.fail_after}, nproc {os.cpu_count()}, "
              f"load {' '.join(load0)} -> {' '.join(load1)}; all {args.services} admitted in {admitted:.1f} s")
        print()
        print("| figure | value | target |")
        print("|---|---|---|")
        print(f"| agent RSS (steady) | {mem.get('VmRSS', 0) / 1024:.1f} MiB (peak {mem.get('VmHWM', 0) / 1024:.1f} MiB) | < 30 MiB |")
        print(f"| agent CPU, own (utime+stime over {args.idle:g} s) | {cpu:.2f} % of a core | < 2 % |")
        print(f"| checks run in that time; agent CPU per check | {checks:.0f} ({checks / (w1 - w0):.1f}/s); "
              f"{per_check:.1f} us | - |")
        print(f"| removal after the deciding check, p50 / p99 / max ({len(lat)} samples) | "
              f"{pct(lat, 50):.1f} / {pct(lat, 99):.1f} / {lat[-1] if lat else float('nan'):.1f} ms"
              f"{f' ({skipped} left out: a check timed out first)' if skipped else ''} | p99 < 100 ms |")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("KEEP") == "1":
            print(f"scratch kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
