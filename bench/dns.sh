#!/usr/bin/env bash
# DNS benchmark: dns-gateway against Knot and Unbound in one run, same 1,000-name zone
# (../shared/bench/peers), same pinned cores (server SERVER_CPU, dnsperf CLIENT_CPU), the peers'
# matrix (saturated QPS, server CPU per query, p50/p99 at LAT_QPS, hit and 10 % NXDOMAIN); the
# gateway's zone has a gray policy on every tenth name. The agent's local DNS runs the same matrix
# on the same store. Then propagation (registration, health change, shift -> changed answer,
# p50/p99 over PROP_N changes) at a gateway and at an agent. Last in the server matrix, a
# zero-work responder (the peers' phys/null-dns.c; NULL_DNS=0 skips it) gives the machine's floor.
#   bench/dns.sh [OUT]     (RUNS, DURATION, LAT_QPS, PROP_N as in the peers' README)
# Run it on a quiet machine: figures taken while others compile are noise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
peers="${PEERS_DIR:-../shared/bench/peers}"
[[ -d "$peers" ]] || peers=/work/shared/bench/peers
out="${1:-/dev/stdout}"
target="${CARGO_TARGET_DIR:-target}/release"
cargo build --release --bin pyxis --bin dns-gateway --bin ns-agent >&2
work=$(mktemp -d)
store_port=17971
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# The store runs on the client core, away from the server under test.
taskset -c "${CLIENT_CPU:-1}" "$target/pyxis" server --id 1 --listen "127.0.0.1:$store_port" \
    --data-dir "$work/store" >"$work/store.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$store_port/healthz" >/dev/null && break; sleep 0.1; done
export BENCH_TMP="${BENCH_TMP:-${TMPDIR:-/tmp}/peerbench}"
export ZONE_DIR="$BENCH_TMP/zone-data"
mkdir -p "$ZONE_DIR"
[[ -f "$ZONE_DIR/zone.db" ]] || python3 "$peers/load/gen_zone.py" "$ZONE_DIR" >&2
python3 bench/dns_register.py "http://127.0.0.1:$store_port" "$ZONE_DIR/zone.db" >&2

{
    echo "# bench/dns.sh $(date -u +%FT%TZ) $(git rev-parse --short HEAD)"
    RUST_LOG=warn DNS_CMD="$target/dns-gateway --store 127.0.0.1:$store_port --listen 127.0.0.1:{PORT}" \
        bash "$peers/dns-cmd.sh" dns-gateway
    # The agent's local DNS: same matrix, same zone from the same store (issue target: >= 0.8x
    # the gateway). Its config carries the port, so dns-cmd.sh is told the same one.
    agent_port=15307
    mkdir -p "$work/agent/services.d"
    cat >"$work/agent/agent.toml" <<TOML
node = "bench-agent"
datacenter = "dc1"
advertise = "127.0.0.1"
store = ["127.0.0.1:$store_port"]
services_dir = "services.d"
http = "127.0.0.1:15308"
state_file = "$work/agent/state.json"
dns = "127.0.0.1:$agent_port"
TOML
    RUST_LOG=warn PORT=$agent_port DNS_CMD="$target/ns-agent --config $work/agent/agent.toml" \
        bash "$peers/dns-cmd.sh" ns-agent-dns
    bash "$peers/dns-knot.sh"
    bash "$peers/dns-unbound.sh"
    # The floor of this machine in the same run: a responder that does no lookup (it flips
    # the header and sends the query back), under the same load. No server can beat its
    # p99, so it says whether an absolute latency target is the server's to meet.
    if [[ "${NULL_DNS:-1}" == 1 ]] && command -v gcc >/dev/null; then
        gcc -O2 -o "$work/null-dns" "$peers/phys/null-dns.c"
        # Not through dns-cmd.sh: its readiness check wants A records, which this never has.
        null_pin=()
        [[ "${PIN:-1}" == 1 ]] && null_pin=(taskset -c "${SERVER_CPU:-0}")
        "${null_pin[@]}" "$work/null-dns" 127.0.0.1 15309 1 >"$work/null-dns.log" 2>&1 &
        null_pid=$!
        pids+=("$null_pid")
        for _ in $(seq 50); do
            dig +time=1 +tries=1 @127.0.0.1 -p 15309 svc00001.ns.corp A 2>/dev/null | grep -q 'status: NOERROR' && break
            sleep 0.1
        done
        SERVER_PID="$null_pid" bash "$peers/load/dns-matrix.sh" 127.0.0.1 15309 null-dns
        kill "$null_pid" 2>/dev/null || true
    fi
} | tee -a "$out"

# Propagation, against a gateway of its own.
RUST_LOG=warn "$target/dns-gateway" --store "127.0.0.1:$store_port" --listen 127.0.0.1:15399 \
    >"$work/gw.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do dig @127.0.0.1 -p 15399 ns.corp SOA +short +tries=1 +time=1 >/dev/null 2>&1 && break; sleep 0.1; done
python3 bench/dns_propagation.py "http://127.0.0.1:$store_port" 127.0.0.1 15399 "${PROP_N:-200}" gateway | tee -a "$out"

# Propagation at an agent (its DNS answers as a client in dc1), on the same store.
mkdir -p "$work/agent2/services.d"
cat >"$work/agent2/agent.toml" <<TOML
node = "bench-agent-2"
datacenter = "dc1"
advertise = "127.0.0.1"
store = ["127.0.0.1:$store_port"]
services_dir = "services.d"
http = "127.0.0.1:15398"
state_file = "$work/agent2/state.json"
dns = "127.0.0.1:15397"
TOML
RUST_LOG=warn "$target/ns-agent" --config "$work/agent2/agent.toml" >"$work/agent2.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do dig @127.0.0.1 -p 15397 ns.corp SOA +short +tries=1 +time=1 >/dev/null 2>&1 && break; sleep 0.1; done
python3 bench/dns_propagation.py "http://127.0.0.1:$store_port" 127.0.0.1 15397 "${PROP_N:-200}" agent | tee -a "$out"
