#!/usr/bin/env bash
# DNS server CPU per query, A/B: the servers named on the command line (a dns-gateway binary,
# or the word `knot`) take turns (A B A B ...) for ROUNDS rounds on the same store and the
# peers' 1,000-name zone, each pinned to SERVER_CPU with dnsperf and the store on CLIENT_CPU.
# Per turn: dnsperf at a fixed QPS for SECS s (after WARM s), the server's utime+stime over
# that phase from /proc/PID/stat (all threads) divided by the queries answered, plus the
# per-thread split; then SAT_SECS s saturated (QPS, noisy on a shared machine).
#   bench/dns_cpu.sh BIN_OR_knot... (env: ROUNDS=3 QPS=10000 SECS=10 WARM=2 SAT_SECS=5 MIX=hit|nx10)
# One line per turn on stdout; the load average before each turn is in it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $# -ge 1 ]] || { echo "usage: $0 BIN_OR_knot..." >&2; exit 2; }
peers="${PEERS_DIR:-../shared/bench/peers}"
[[ -d "$peers" ]] || peers=/work/shared/bench/peers
target="${CARGO_TARGET_DIR:-target}/release"
SERVER_CPU="${SERVER_CPU:-0}" CLIENT_CPU="${CLIENT_CPU:-1}"
ROUNDS="${ROUNDS:-3}" QPS="${QPS:-10000}" SECS="${SECS:-10}" WARM="${WARM:-2}"
SAT_SECS="${SAT_SECS:-5}" MIX="${MIX:-hit}"
export BENCH_TMP="${BENCH_TMP:-${TMPDIR:-/tmp}/peerbench}"
export ZONE_DIR="$BENCH_TMP/zone-data"
bash "$peers/load/dns-matrix.sh" --prepare
queries="$ZONE_DIR/q-$MIX.txt"
work=$(mktemp -d)
store_port=17981 port=15381
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

taskset -c "$CLIENT_CPU" "$target/pyxis" server --id 1 --listen "127.0.0.1:$store_port" \
    --data-dir "$work/store" >"$work/store.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$store_port/healthz" >/dev/null && break; sleep 0.1; done
python3 bench/dns_register.py "http://127.0.0.1:$store_port" "$ZONE_DIR/zone.db" >&2

ticks() { awk '{print $14+$15}' <(sed 's/.*) /x /' "/proc/$1/stat"); }
# Per-thread ticks as "name=N,..." (threads of one name summed).
thread_ticks() {
    for t in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(sed 's/.*) /x /' "$t/stat" | awk '{print $14+$15}')"
    done | awk '{s[$1]+=$2} END{for (k in s) printf "%s=%d ", k, s[k]}'
}

start_server() {
    local what="$1"
    if [[ "$what" == knot ]]; then
        mkdir -p "$work/knot"
        cp "$ZONE_DIR/zone.db" "$work/knot/zone.db"
        cat >"$work/knot/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$port
    rundir: $work/knot
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: $work/knot/knot.sock
database:
    storage: $work/knot/db
log:
  - target: stderr
    any: error
zone:
  - domain: ns.corp
    file: $work/knot/zone.db
    zonefile-sync: -1
    journal-content: none
CONF
        taskset -c "$SERVER_CPU" knotd -c "$work/knot/knot.conf" >"$work/server.log" 2>&1 &
    else
        RUST_LOG=warn taskset -c "$SERVER_CPU" "$what" --store "127.0.0.1:$store_port" \
            --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
    fi
    server_pid=$!
    for _ in $(seq 100); do
        dig +time=1 +tries=1 +short @127.0.0.1 -p "$port" svc00001.ns.corp A 2>/dev/null | grep -q '^[0-9]' && return 0
        sleep 0.1
    done
    cat "$work/server.log" >&2
    return 1
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
}

hz=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
    i=0
    for what in "$@"; do
        i=$((i + 1))
        load=$(cut -d' ' -f1 /proc/loadavg)
        start_server "$what"
        taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$WARM" -Q "$QPS" \
            -c 4 >/dev/null 2>&1
        t0=$(ticks "$server_pid") th0=$(thread_ticks "$server_pid")
        out=$(taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$SECS" \
            -Q "$QPS" -c 4 -t 2 2>&1)
        t1=$(ticks "$server_pid") th1=$(thread_ticks "$server_pid")
        done_q=$(awk '/Queries completed/{print $3}' <<<"$out")
        lost=$(awk '/Queries lost/{print $3}' <<<"$out")
        sat=$(taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$SAT_SECS" \
            -q 200 -c 4 -t 2 2>&1 | awk '/Queries per second/{printf "%.0f", $4}')
        stop_server
        # thread split: ticks during the fixed-rate phase per thread name
        split=$(python3 -c '
import sys
a = dict(kv.split("=") for kv in sys.argv[1].split())
b = dict(kv.split("=") for kv in sys.argv[2].split())
print(",".join("%s:%d" % (k, int(b[k]) - int(a.get(k, 0))) for k in sorted(b) if int(b[k]) - int(a.get(k, 0)) > 0))
' "$th0" "$th1")
        awk -v r="$round" -v i="$i" -v w="$(basename "$(dirname "$what")")/$(basename "$what")" \
            -v d=$((t1 - t0)) -v hz="$hz" -v n="$done_q" -v lost="$lost" -v sat="$sat" \
            -v load="$load" -v thr="$split" -v mix="$MIX" \
            'BEGIN{printf "round=%s server=%d:%s mix=%s cpu_us_per_q=%.2f ticks=%d answered=%s lost=%s sat_qps=%s load=%s threads=%s\n", r, i, w, mix, d/hz*1e6/n, d, n, lost, sat, load, thr}'
    done
done
