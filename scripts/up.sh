#!/usr/bin/env bash
# Starts the whole system on this machine, in the foreground, until Ctrl-C.
# That is a one-node pyxis store on 127.0.0.1:7070 (data in ./pyxis-data), an ns-agent (API
# on 127.0.0.1:8500, local DNS on 127.0.0.1:8600) running the example service `hello` (a tiny
# HTTP server on 127.0.0.1:8081) from ns-agent/examples/, and the DNS gateway on
# 127.0.0.1:8053 (metrics on 127.0.0.1:8054).
#   PYXIS_LISTEN=127.0.0.1:7070  PYXIS_DATA=./pyxis-data  scripts/up.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

listen="${PYXIS_LISTEN:-127.0.0.1:7070}"
data="${PYXIS_DATA:-./pyxis-data}"
bin="${CARGO_TARGET_DIR:-target}/release/pyxis"
agent="${CARGO_TARGET_DIR:-target}/release/ns-agent"
agent_config="ns-agent/examples/agent.toml"
gateway="${CARGO_TARGET_DIR:-target}/release/dns-gateway"

echo "==> building (release)"
cargo build --release --bins

pids=()
# Newest first: the agent deregisters through the store, so the store goes last.
cleanup() {
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

echo "==> pyxis store on $listen (data in $data/node-1)"
# In its own session, so Ctrl-C reaches only the agent: it must deregister through the store.
RUST_LOG="${RUST_LOG:-info,openraft=warn}" setsid "$bin" server \
    --id 1 --listen "$listen" --data-dir "$data/node-1" &
pids+=($!)

for _ in $(seq 100); do
    "$bin" --endpoints "$listen" status >/dev/null 2>&1 && break
    sleep 0.1
done
"$bin" --endpoints "$listen" kv put /hello/world "pyxis is up" >/dev/null

echo "==> ns-agent with $agent_config (example service: hello, local DNS on 127.0.0.1:8600)"
# Ctrl-C (SIGTERM) deregisters first; --stop-services-on-exit then stops the example server.
RUST_LOG="${RUST_LOG:-info,hickory_server=warn,hickory_net=warn,hickory_resolver=warn}" "$agent" --config "$agent_config" --store "$listen" \
    --stop-services-on-exit &
pids+=($!)
for _ in $(seq 100); do
    "$bin" --endpoints "$listen" service show hello 2>/dev/null | grep -q passing && break
    sleep 0.1
done
echo "==> dns-gateway on 127.0.0.1:8053 (zone ns.corp)"
RUST_LOG="${RUST_LOG:-info,hickory_server=warn,hickory_net=warn}" "$gateway" --store "$listen" --listen 127.0.0.1:8053 \
    --http 127.0.0.1:8054 &
pids+=($!)
for _ in $(seq 100); do
    dig @127.0.0.1 -p 8053 hello.ns.corp +short +tries=1 +time=1 2>/dev/null | grep -q . && break
    sleep 0.1
done
for _ in $(seq 100); do
    dig @127.0.0.1 -p 8600 hello.ns.corp +short +tries=1 +time=1 2>/dev/null | grep -q . && break
    sleep 0.1
done
cat <<MSG

pyxis is up, with the agent (and its local DNS), its example service and the DNS gateway. Try:
  dig @127.0.0.1 -p 8600 hello.ns.corp
  dig @127.0.0.1 -p 8053 hello.ns.corp
  dig @127.0.0.1 -p 8053 hello.ns.corp SRV
  curl -s http://127.0.0.1:8500/v1/resolve/hello
  curl -s "http://127.0.0.1:8500/v1/resolve/hello?wait_rev=INDEX&timeout=30s"   # waits for a change
  curl -s http://127.0.0.1:8054/metrics | grep dns_
  $bin --endpoints $listen service show hello
  $agent --config $agent_config status
  curl -s http://127.0.0.1:8081/
  $agent --config $agent_config maint hello on --reason "trying it out"
  $bin --endpoints $listen kv get /hello/world
  $bin --endpoints $listen status
Ctrl-C stops everything.
MSG
wait
