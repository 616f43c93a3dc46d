#!/usr/bin/env bash
# Watches and leases, pyxis vs etcd 3.4, 3 nodes each on loopback, one run.
#
#   bench/watch.sh [OUT.md]
#
# For each system in $SYSTEMS (default "pyxis etcd"): start a 3-node cluster,
#   1. watch delivery latency (bench/watch_latency.py): WATCH_N puts, WATCH_INTERVAL_MS
#      apart, to the leader; watchers on one prefix spread over the 3 members,
#      once with 1 watcher and once with each count in WATCHERS (default 1000,
#      WATCH_SAMPLE of them timed, the rest read by a consumer process);
#   2. keep-alive load: LEASES leases of LEASE_TTL s, one key bound to each
#      (bench/lease_grant.py), then wrk (bench/lease_keepalive.lua) renews each
#      every LEASE_TTL/3 s for LEASE_SECS against the leader, while the leader's
#      CPU (utime+stime, /proc/PID/stat) is read; afterwards every bound key
#      must still be there and a sample of leases must still be alive;
# then stop the cluster. Prints a markdown block, appends it to OUT.md if given.
# Ports and claims as bench/kv.sh (see bench/README.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT/bench"
PEERS_DIR="${PEERS_DIR:-$ROOT/../shared/bench/peers}"
[[ -r "$PEERS_DIR/lib.sh" ]] || { echo "shared peer scripts not found at $PEERS_DIR (set PEERS_DIR)" >&2; exit 1; }
export BENCH_TMP="${BENCH_TMP:-${TMPDIR:-/tmp}/pyxisbench}"
# shellcheck source=/dev/null
source "$PEERS_DIR/lib.sh"
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"

OUT="${1:-}"
SYSTEMS="${SYSTEMS:-pyxis etcd}"
WATCH_N="${WATCH_N:-300}"
WATCH_INTERVAL_MS="${WATCH_INTERVAL_MS:-10}"
WATCHERS="${WATCHERS:-1000}"
WATCH_SAMPLE="${WATCH_SAMPLE:-50}"
LEASES="${LEASES:-10000}"
LEASE_TTL="${LEASE_TTL:-10}"
LEASE_SECS="${LEASE_SECS:-30}"
LEASE_CONNS="${LEASE_CONNS:-100}"
BUILD="${BUILD:-0}"
PYXIS_BIN="${PYXIS_BIN:-}"
PYXIS_BASE_PORT="${PYXIS_BASE_PORT:-24790}"
PYXIS_START_TIMEOUT="${PYXIS_START_TIMEOUT:-30}"
PYXIS_RUST_LOG="${PYXIS_RUST_LOG:-warn}"
ETCD_BASE_CLIENT="${ETCD_BASE_CLIENT:-23790}"
ETCD_BASE_PEER="${ETCD_BASE_PEER:-23800}"
# keep-alive rate: every lease renewed every TTL/3 seconds
LEASE_RATE=$(python3 -c "print(round($LEASES / ($LEASE_TTL / 3.0)))")

for tool in wrk curl python3; do command -v "$tool" >/dev/null || die "$tool not found"; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CMDLINE="SYSTEMS='$SYSTEMS' WATCH_N=$WATCH_N WATCH_INTERVAL_MS=$WATCH_INTERVAL_MS WATCHERS='$WATCHERS' WATCH_SAMPLE=$WATCH_SAMPLE LEASES=$LEASES LEASE_TTL=$LEASE_TTL LEASE_SECS=$LEASE_SECS LEASE_CONNS=$LEASE_CONNS bench/watch.sh${OUT:+ $OUT}"

W=$(mk_workdir watch)
ETCD_DIR="$W/etcd"
RESULTS="$W/results.txt"
: >"$RESULTS"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


# run_phases SYSTEM LEADER_URL LEADER_PID WATCH_URLS ALL_PIDS...
run_phases() {
  local sys="$1" url="$2" lpid="$3" wurls="$4"; shift 4
  local n line
  for n in 1 $WATCHERS; do
    log "$sys: watch latency, $n watcher(s), $WATCH_N puts ${WATCH_INTERVAL_MS} ms apart"
    line=$(timeout 300 python3 "$BENCH_DIR/watch_latency.py" --system "$sys" --put-url "$url" --watch-urls "$wurls" \
      --watchers "$n" --sample "$WATCH_SAMPLE" --n "$WATCH_N" --interval "$(python3 -c "print($WATCH_INTERVAL_MS/1000)")") \
      || die "$sys: watch_latency.py failed ($n watchers)"
    log "$line"; echo "$line" >>"$RESULTS"
  done
  log "$sys: granting $LEASES leases of ${LEASE_TTL}s, one bound key each"
  line=$(python3 "$BENCH_DIR/lease_grant.py" grant --system "$sys" --url "$url" --n "$LEASES" --ttl "$LEASE_TTL" --ids "$W/$sys.ids")
  log "$line"; echo "$line" >>"$RESULTS"
  local hz l0 l1 a0 a1 b0 b1 t0 t1 p
  hz=$(getconf CLK_TCK)
  l0=$(tree_ticks "$lpid"); a0=0; for p in "$@"; do a0=$((a0 + $(tree_ticks "$p"))); done
  b0=$(busy_ticks); t0=$(date +%s.%N)
  log "$sys: keep-alives at $LEASE_RATE/s for ${LEASE_SECS}s ($LEASE_CONNS connections) against $url"
  line=$(WRK_THREADS=2 LEASE_IDS="$W/$sys.ids" LEASE_API="$sys" LEASE_RATE="$LEASE_RATE" \
    wrk -t2 -c"$LEASE_CONNS" -d"${LEASE_SECS}s" --timeout 5s -s "$BENCH_DIR/lease_keepalive.lua" "$url" | grep '^keepalive ')
  t1=$(date +%s.%N); b1=$(busy_ticks)
  l1=$(tree_ticks "$lpid"); a1=0; for p in "$@"; do a1=$((a1 + $(tree_ticks "$p"))); done
  log "$line"
  echo "$line leader_ticks=$((l1 - l0)) members_ticks=$((a1 - a0)) busy_ticks=$((b1 - b0)) hz=$hz secs=$(python3 -c "print(round($t1-$t0,2))") system=$sys" >>"$RESULTS"
  line=$(python3 "$BENCH_DIR/lease_grant.py" check --system "$sys" --url "$url" --ids "$W/$sys.ids")
  log "$line"; echo "$line" >>"$RESULTS"
}


run_pyxis() {
  if [[ -z "$PYXIS_BIN" ]]; then
    PYXIS_BIN="$ROOT/target/release/pyxis"
    if [[ "$BUILD" == 1 ]]; then (cd "$ROOT" && cargo build --release -p pyxis) >&2 || die "release build failed"; fi
  fi
  [[ -x "$PYXIS_BIN" ]] || die "pyxis binary not found at $PYXIS_BIN"
  local i l peers="" dir="$W/pyxis" leader="" pids=() info ok=0
  mkdir -p "$dir"
  for i in 1 2 3; do peers+="${peers:+,}$i=127.0.0.1:$((PYXIS_BASE_PORT + i))"; done
  for i in 1 2 3; do
    start_bg "$dir/n$i.log" "" env RUST_LOG="$PYXIS_RUST_LOG" "$PYXIS_BIN" server --id "$i" \
      --listen "127.0.0.1:$((PYXIS_BASE_PORT + i))" --peers "$peers" --data-dir "$dir/n$i" >/dev/null
    pids+=("${PIDS[-1]}")
  done
  local deadline=$((SECONDS + PYXIS_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    leader=""; ok=1
    for i in 1 2 3; do
      kill -0 "${pids[i-1]}" 2>/dev/null || { tail -n 20 "$dir/n$i.log" >&2; die "pyxis node $i exited during startup"; }
      info=$(curl -fsS --max-time 1 "$(pyxis_url "$i")/v1/cluster" 2>/dev/null) || { ok=0; break; }
      l=$(json_get "$info" 'd.get("leader") or ""' 2>/dev/null) || { ok=0; break; }
      [[ -n "$l" && ( -z "$leader" || "$leader" == "$l" ) ]] || { ok=0; break; }
      leader="$l"
    done
    [[ "$ok" == 1 ]] && break
    sleep 0.2
  done
  [[ "$ok" == 1 && "$leader" =~ ^[123]$ ]] || die "pyxis cluster did not agree on a leader within ${PYXIS_START_TIMEOUT}s"
  local url; url=$(pyxis_url "$leader")
  curl -fsS --max-time 5 -X PUT --data-binary smoke "$url/v1/kv/bench/smoke" >/dev/null || die "pyxis: smoke PUT failed"
  log "pyxis: leader node $leader at $url (pid ${pids[leader-1]})"
  echo "meta pyxis_bin=$PYXIS_BIN, built $(date -r "$PYXIS_BIN" -Is)" >>"$RESULTS"
  run_phases pyxis "$url" "${pids[leader-1]}" "$(pyxis_url 1),$(pyxis_url 2),$(pyxis_url 3)" "${pids[@]}"
  info=$(curl -fsS --max-time 2 "$url/v1/cluster" || echo '{}')
  [[ "$(json_get "$info" 'd.get("leader")' 2>/dev/null)" == "$leader" ]] || { log "WARNING: pyxis leader changed during the run"; echo "warning pyxis leader changed" >>"$RESULTS"; }
  stop_all
}

run_etcd() {
  command -v etcd >/dev/null || die "etcd not found: apt-get install -y etcd-server"
  local url idx pids
  export BASE_CLIENT="$ETCD_BASE_CLIENT" BASE_PEER="$ETCD_BASE_PEER"
  url=$("$PEERS_DIR/etcd-cluster.sh" start "$ETCD_DIR")
  mapfile -t pids <"$ETCD_DIR/pids"
  idx=$(( ${url##*:} - ETCD_BASE_CLIENT ))
  log "etcd: leader n$idx at $url (pid ${pids[idx-1]}); $(etcd --version | head -1)"
  echo "meta etcd=$(etcd --version | sed -n 's/^etcd Version: //p')" >>"$RESULTS"
  local c="http://127.0.0.1:"
  run_phases etcd "$url" "${pids[idx-1]}" "$c$((ETCD_BASE_CLIENT + 1)),$c$((ETCD_BASE_CLIENT + 2)),$c$((ETCD_BASE_CLIENT + 3))" "${pids[@]}"
  [[ "$("$PEERS_DIR/etcd-cluster.sh" leader "$ETCD_DIR" || true)" == "$url" ]] || { log "WARNING: etcd leader changed"; echo "warning etcd leader changed" >>"$RESULTS"; }
  "$PEERS_DIR/etcd-cluster.sh" stop "$ETCD_DIR"
  unset BASE_CLIENT BASE_PEER
}

write_run_meta
claim_system_ports
for s in $SYSTEMS; do log "=== $s"; "run_$s"; done
echo "meta load_end=$(foreign_load)" >>"$RESULTS"
block=$(python3 "$BENCH_DIR/watch_report.py" "$RESULTS")
printf '%s\n' "$block"
if [[ -n "$OUT" ]]; then mkdir -p "$(dirname "$OUT")"; printf '\n%s\n' "$block" >>"$OUT"; log "appended to $OUT"; fi
