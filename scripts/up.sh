#!/usr/bin/env bash
# Starts the whole system on this machine, in the foreground, until Ctrl-C.
# Today that is a one-node pyxis store on 127.0.0.1:7070 (data in ./pyxis-data);
# the DNS gateway and the agent join this script as they land.
#   PYXIS_LISTEN=127.0.0.1:7070  PYXIS_DATA=./pyxis-data  scripts/up.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

listen="${PYXIS_LISTEN:-127.0.0.1:7070}"
data="${PYXIS_DATA:-./pyxis-data}"
bin="${CARGO_TARGET_DIR:-target}/release/pyxis"

echo "==> building (release)"
cargo build --release --bins

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait; }
trap cleanup EXIT INT TERM

echo "==> pyxis store on $listen (data in $data/node-1)"
RUST_LOG="${RUST_LOG:-info,openraft=warn}" "$bin" server \
    --id 1 --listen "$listen" --data-dir "$data/node-1" &
pids+=($!)

for _ in $(seq 100); do
    "$bin" --endpoints "$listen" status >/dev/null 2>&1 && break
    sleep 0.1
done
"$bin" --endpoints "$listen" kv put /hello/world "pyxis is up" >/dev/null
cat <<MSG

pyxis is up. Try:
  $bin --endpoints $listen kv get /hello/world
  curl -s http://$listen/v1/kv/hello/?prefix=true
  $bin --endpoints $listen status
Ctrl-C stops everything.
MSG
wait
