#!/usr/bin/env python3
"""Watch delivery latency with many watchers, pyxis or etcd (JSON gateway).

  watch_latency.py --system pyxis|etcd --put-url URL --watch-urls U1,U2,U3
                   [--watchers 1000] [--sample 50] [--n 300] [--interval 0.01]

All watchers watch one fresh prefix and are spread round-robin over the watch
URLs (the cluster's members). --sample of them (all when --watchers is
smaller) are read by threads of this process, which time every event; the
rest are opened by a child process (this script with --consume) that reads
and discards what arrives, waking every --batch-ms, so the server really
writes to every stream without this process paying for 1,000 parsers.
Then N puts (256-byte values, a new key each) go to --put-url one at a time,
--interval apart, on one keep-alive connection. Per put it records t0 (request
about to be sent) and t1 (whole reply received, "ack"); per sampled watcher
and put, the time the bytes carrying the event came off the socket. It prints
one line:
  watch system=.. watchers=.. sampled=.. n=.. put_p50_ms put_p99_ms
        ack_to_event_p50_ms ack_to_event_p99_ms ack_to_event_max_ms
        start_to_event_p50_ms start_to_event_p99_ms missing=.. consumers_full=K/M
ack_to_event can be negative: an event may reach a watcher before the put's
reply reaches the putter. Everything runs through raw sockets and the same
code for both systems, so client overhead (Python, the GIL: up to ~1 ms spread
when 50 reader threads wake at once) is the same on both sides.
"""
import argparse, base64, http.client, json, os, selectors, socket, subprocess, sys, threading, time
from urllib.parse import urlsplit

b64 = lambda b: base64.b64encode(b).decode()
now = time.monotonic


def hostport(url):
    u = urlsplit(url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loopback targets only: %s" % url)
    return u.hostname, u.port


def watch_request(system, url, prefix):
    host, port = hostport(url)
    if system == "pyxis":
        req = "GET /v1/watch/%s?prefix=true HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (prefix, host, port)
    else:
        p = prefix.encode()
        body = json.dumps({"create_request": {"key": b64(p), "range_end": b64(p[:-1] + bytes([p[-1] + 1]))}})
        req = ("POST /v3/watch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s" % (host, port, len(body), body))
    return (host, port), req.encode()


class Stream:
    """HTTP/1.1 response parser: headers, then (chunked or plain) body split in lines."""

    def __init__(self):
        self.raw = b""
        self.headers_done = False
        self.chunked = False
        self.need = 0  # bytes left in the current chunk
        self.body = b""
        self.status = None

    def feed(self, data):
        self.raw += data
        if not self.headers_done:
            i = self.raw.find(b"\r\n\r\n")
            if i < 0:
                return []
            head, self.raw = self.raw[:i].decode("latin-1"), self.raw[i + 4:]
            self.status = int(head.split(" ", 2)[1])
            self.chunked = "transfer-encoding: chunked" in head.lower()
            self.headers_done = True
        if not self.chunked:
            self.body += self.raw
            self.raw = b""
        else:
            while self.raw:
                if self.need == 0:
                    j = self.raw.find(b"\r\n")
                    if j < 0:
                        break
                    line = self.raw[:j].split(b";")[0].strip()
                    if not line:  # CRLF after a chunk's data
                        self.raw = self.raw[j + 2:]
                        continue
                    self.need = int(line, 16)
                    self.raw = self.raw[j + 2:]
                    if self.need == 0:
                        self.raw = b""
                        break
                take = self.raw[:self.need]
                self.body += take
                self.raw = self.raw[len(take):]
                self.need -= len(take)
        if b"\n" not in self.body:
            return []
        *lines, self.body = self.body.split(b"\n")
        return [l for l in lines if l.strip()]


def event_keys(system, line):
    """-> (created_or_progress: bool, [keys of put events])"""
    d = json.loads(line)
    if system == "pyxis":
        if d.get("type") == "put":
            return False, [d["key"]]
        return d.get("type") == "progress", []
    r = d.get("result", {})
    return bool(r.get("created")), [base64.b64decode(ev["kv"]["key"]).decode() for ev in r.get("events", []) or []]


def open_watch(system, url, prefix):
    addr, req = watch_request(system, url, prefix)
    s = socket.create_connection(addr, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(req)
    return s


def sampled_watcher(system, url, prefix, created, recv, stop):
    s = open_watch(system, url, prefix)
    st = Stream()
    s.settimeout(0.5)
    while not stop.is_set():
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        t = now()
        if not data:
            break
        for line in st.feed(data):
            c, keys = event_keys(system, line)
            if c:
                created.release()
            for k in keys:
                recv.setdefault(k.lstrip("/"), t)
        if st.status is not None and st.status != 200:
            sys.exit("watch %s answered %d" % (url, st.status))
    s.close()


def consume(a):
    """Child: open the unsampled watchers, read and discard, count events."""
    urls = a.watch_urls.split(",")
    sel = selectors.DefaultSelector()
    streams = {}
    for j in range(a.watchers):
        s = open_watch(a.system, urls[(j + a.offset) % len(urls)], a.prefix)
        s.setblocking(False)
        streams[s] = [Stream(), False, 0]  # parser, created, events seen
        sel.register(s, selectors.EVENT_READ)

    def pump():
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(s)
                continue
            st = streams[s]
            for line in st[0].feed(data):
                c, keys = event_keys(a.system, line)
                st[1] = st[1] or c
                st[2] += len(keys)

    deadline = now() + 60
    while not all(v[1] for v in streams.values()):
        if now() > deadline:
            sys.exit("consumer: watchers not created within 60 s")
        pump()
    print("ready", flush=True)
    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    while not stdin_closed.is_set():
        pump()
        time.sleep(a.batch_ms / 1000)
    # The timed watchers may finish before the last events reach all 950 sockets here: give
    # stragglers the same 5 s grace the timed watchers get, then count.
    deadline = now() + 5
    pump()
    while now() < deadline and not all(v[2] >= a.n for v in streams.values()):
        pump()
    counts = [v[2] for v in streams.values()]
    print("consumed sockets=%d full=%d min_events=%d" % (len(counts), sum(c >= a.n for c in counts), min(counts)), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--system", choices=["pyxis", "etcd"], required=True)
    p.add_argument("--put-url")
    p.add_argument("--watch-urls", required=True)
    p.add_argument("--watchers", type=int, default=1)
    p.add_argument("--sample", type=int, default=50)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--batch-ms", type=float, default=50)
    p.add_argument("--consume", action="store_true")
    p.add_argument("--prefix")
    p.add_argument("--offset", type=int, default=0)
    a = p.parse_args()
    if a.consume:
        return consume(a)

    urls = a.watch_urls.split(",")
    prefix = a.prefix or "bench/watch%d/" % time.time_ns()
    sample = min(a.sample, a.watchers)
    rest = a.watchers - sample
    child = None
    if rest:
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--consume", "--system", a.system,
                                  "--watch-urls", a.watch_urls, "--watchers", str(rest), "--n", str(a.n),
                                  "--prefix", prefix, "--offset", str(sample), "--batch-ms", str(a.batch_ms)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if child.stdout.readline().strip() != "ready":
            sys.exit("consumer process failed")
    created = threading.Semaphore(0)
    stop = threading.Event()
    recvs = []
    for j in range(sample):
        r = {}
        recvs.append(r)
        threading.Thread(target=sampled_watcher, args=(a.system, urls[j % len(urls)], prefix, created, r, stop),
                         daemon=True).start()
    for _ in range(sample):
        if not created.acquire(timeout=30):
            sys.exit("sampled watchers not created within 30 s")
    time.sleep(0.5)

    host, port = hostport(a.put_url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    val = b"v" * 256
    sent = {}
    for i in range(a.n):
        k = prefix + str(i)
        if a.system == "pyxis":
            method, path, body = "PUT", "/v1/kv/" + k, val
        else:
            method, path, body = "POST", "/v3/kv/put", json.dumps({"key": b64(k.encode()), "value": b64(val)})
        t0 = now()
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        resp.read()
        t1 = now()
        if resp.status != 200:
            sys.exit("put %s answered %d" % (k, resp.status))
        sent[k] = (t0, t1)
        time.sleep(a.interval)
    deadline = now() + 5
    while now() < deadline and any(len(r) < len(sent) for r in recvs):
        time.sleep(0.05)
    stop.set()
    consumed = "consumers_full=0/0"
    if child:
        child.stdin.close()
        line = child.stdout.readline().split()
        child.wait(timeout=30)
        kv = dict(x.split("=") for x in line[1:])
        consumed = "consumers_full=%s/%s consumers_min_events=%s" % (kv["full"], kv["sockets"], kv["min_events"])

    put = sorted((t1 - t0) * 1000 for t0, t1 in sent.values())
    ack, start, missing = [], [], 0
    for r in recvs:
        for k, (t0, t1) in sent.items():
            if k in r:
                ack.append((r[k] - t1) * 1000)
                start.append((r[k] - t0) * 1000)
            else:
                missing += 1
    ack.sort()
    start.sort()
    q = lambda v, f: v[min(len(v) - 1, int(len(v) * f))] if v else float("nan")
    print("watch system=%s watchers=%d sampled=%d n=%d interval_ms=%g put_p50_ms=%.3f put_p99_ms=%.3f "
          "ack_to_event_p50_ms=%.3f ack_to_event_p99_ms=%.3f ack_to_event_max_ms=%.3f "
          "start_to_event_p50_ms=%.3f start_to_event_p99_ms=%.3f missing=%d %s" % (
              a.system, a.watchers, sample, len(sent), a.interval * 1000, q(put, .5), q(put, .99),
              q(ack, .5), q(ack, .99), ack[-1] if ack else float("nan"), q(start, .5), q(start, .99),
              missing, consumed), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
