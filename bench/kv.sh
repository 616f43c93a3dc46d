#!/usr/bin/env bash
# Pyxis vs etcd 3.4, 3 nodes each on loopback, measured back to back in one run.
#
#   bench/kv.sh [OUT.md]
#
# For each system in $SYSTEMS (default "pyxis etcd"; "pyxis-secure" is pyxis with ACLs
# bootstrapped and TLS on the API and between nodes, the load sending the admin token
# over https): start a 3-node cluster,
# measure CPU per put on the leader and on a follower during a put run at 16
# clients, then run the shared KV matrix (puts with a new key each, 256-byte
# values; linearizable single-key reads; 1/16/64 clients; median of RUNS)
# against the leader, stop the cluster. Prints a markdown block comparing the
# two and appends it to OUT.md when given. See bench/README.md for the knobs.
#
# The load and the etcd cluster come from the shared peer scripts
# (../shared/bench/peers relative to the repo root), used in place.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT/bench"
PEERS_DIR="${PEERS_DIR:-$ROOT/../shared/bench/peers}"
[[ -r "$PEERS_DIR/lib.sh" ]] || { echo "shared peer scripts not found at $PEERS_DIR (set PEERS_DIR)" >&2; exit 1; }

# Defaults that differ from the shared scripts', set before lib.sh reads them.
export BENCH_TMP="${BENCH_TMP:-${TMPDIR:-/tmp}/pyxisbench}"
export RUNS="${RUNS:-3}"
export DURATION="${DURATION:-10}"
# shellcheck source=/dev/null
source "$PEERS_DIR/lib.sh"
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"
export BENCH_TMP RUNS DURATION PIN SERVER_CPU CLIENT_CPU
export KV_PIN_CLIENT="${KV_PIN_CLIENT:-0}"

OUT="${1:-}"
SYSTEMS="${SYSTEMS:-pyxis etcd}"
PIN_SERVERS="${PIN_SERVERS:-0}"
CPU_CONC="${CPU_CONC:-16}"
CPU_DURATION="${CPU_DURATION:-$DURATION}"
BUILD="${BUILD:-1}"
PYXIS_BIN="${PYXIS_BIN:-}"
PYXIS_BASE_PORT="${PYXIS_BASE_PORT:-24790}"
PYXIS_START_TIMEOUT="${PYXIS_START_TIMEOUT:-30}"
PYXIS_EXTRA_ARGS="${PYXIS_EXTRA_ARGS:-}"
PYXIS_RUST_LOG="${PYXIS_RUST_LOG:-warn}"
# TLS=1: the pyxis cluster runs with TLS on the API and between nodes (certificates from
# `pyxis tls gen`), and the load and every check speak https.
TLS="${TLS:-0}"
[[ "$TLS" == 0 || "$TLS" == 1 ]] || die "TLS must be 0 or 1"
ETCD_BASE_CLIENT="${ETCD_BASE_CLIENT:-23790}"
ETCD_BASE_PEER="${ETCD_BASE_PEER:-23800}"

for s in $SYSTEMS; do
  [[ "$s" =~ ^(pyxis|pyxis-secure|pyxis-tls|pyxis-acl|etcd)$ ]] || die "SYSTEMS: unknown system '$s' (pyxis, pyxis-secure, pyxis-tls, pyxis-acl, etcd)"
done
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || die "$tool not found: apt-get install -y wrk curl python3"
done
[[ "$PIN" != 1 ]] || command -v taskset >/dev/null || die "taskset not found (util-linux), or set PIN=0"
[[ "$PIN_SERVERS" == 0 || "$PIN_SERVERS" == 1 ]] || die "PIN_SERVERS must be 0 or 1"

# The exact command, with every knob that shapes the figures.
CMDLINE="TLS=$TLS RUNS=$RUNS DURATION=$DURATION CPU_DURATION=$CPU_DURATION SYSTEMS='$SYSTEMS' PIN=$PIN PIN_SERVERS=$PIN_SERVERS KV_PIN_CLIENT=$KV_PIN_CLIENT SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU bench/kv.sh${OUT:+ $OUT}"

# CPU list for the cluster members: empty = not pinned (the shared
# etcd-cluster.sh convention: 3 members share the cores); PIN_SERVERS=1 pins
# every member of both systems to SERVER_CPU. wrk follows kv-load.sh
# (pinned to CLIENT_CPU only with KV_PIN_CLIENT=1), identically for both.
MEMBER_CPU=""
[[ "$PIN_SERVERS" == 1 && "$PIN" == 1 ]] && MEMBER_CPU="$SERVER_CPU"

W=$(mk_workdir kv)
ETCD_DIR="$W/etcd"
RESULTS="$W/results.txt"
: >"$RESULTS"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM



# CPU used by processes other than this benchmark during a system's phase:
# all user+nice+system ticks (/proc/stat) minus the members' ticks minus this
# script's own and its reaped children's (wrk, curl, python) ticks. On a
# shared 2-core box it tells whether someone else's build or test spoiled
# the figures.
self_ticks() { sed 's/.*) //' /proc/$$/stat | awk '{print $12+$13+$14+$15}'; }
# kernel threads (children of kthreadd, pid 2): loopback softirq and fsync
# writeback work done for the members lands here, not on the members
kthread_ticks() {
  python3 -c '
import glob
t = 0
for f in glob.glob("/proc/[0-9]*/stat"):
    try:
        s = open(f).read()
    except OSError:
        continue
    a = s[s.rindex(")") + 2:].split()
    if a[1] in ("0", "2") and f != "/proc/1/stat":
        t += int(a[11]) + int(a[12])
print(t)'
}
members_ticks() { local p t=0; for p in "$@"; do t=$((t + $(tree_ticks "$p"))); done; echo "$t"; }
WIN=()
window_start() { WIN=("$(busy_ticks)" "$(self_ticks)" "$(members_ticks "$@")" "$(kthread_ticks)" "$SECONDS"); }
# window_end LABEL PIDS...
window_end() {
  local label="$1"; shift
  local b s m k secs hz foreign
  b=$(( $(busy_ticks) - WIN[0] )); s=$(( $(self_ticks) - WIN[1] ))
  m=$(( $(members_ticks "$@") - WIN[2] )); k=$(( $(kthread_ticks) - WIN[3] ))
  ((k > 0)) || k=0 # short-lived kworkers that exit take their ticks along
  secs=$(( SECONDS - WIN[4] ))
  hz=$(getconf CLK_TCK); foreign=$((b - s - m - k)); ((foreign > 0)) || foreign=0
  echo "window label=$label secs=$secs hz=$hz busy_ticks=$b members_ticks=$m bench_ticks=$s kthread_ticks=$k foreign_ticks=$foreign" >>"$RESULTS"
  log "$label: other processes used $((foreign * 100 / hz / (secs > 0 ? secs : 1)))% of one core during the run"
}

# measure_cpu LABEL URL LEADER_PID FOLLOWER_PID OTHER_PID REV_CMD...
# One put run at CPU_CONC clients against URL; CPU ticks (utime+stime, all
# threads) of each member before/after, divided by the puts committed (the
# store's revision delta; wrk's completed requests if that is unavailable).
measure_cpu() {
  local label="$1" url="$2" lpid="$3" fpid="$4" opid="$5"; shift 5
  local hz l0 f0 o0 l1 f1 o1 r0 r1 line reqs puts
  hz=$(getconf CLK_TCK)
  r0=$("$@" || echo "")
  l0=$(tree_ticks "$lpid"); f0=$(tree_ticks "$fpid"); o0=$(tree_ticks "$opid")
  line=$(DURATION="$CPU_DURATION" "$LOAD_DIR/kv-load.sh" "$url" put "$CPU_CONC" "$label/cpu")
  l1=$(tree_ticks "$lpid"); f1=$(tree_ticks "$fpid"); o1=$(tree_ticks "$opid")
  r1=$("$@" || echo "")
  log "cpu run: $line (revision $r0 -> $r1)"
  reqs=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$line")
  puts="$reqs"; local src=wrk
  if [[ "$r0" =~ ^[0-9]+$ && "$r1" =~ ^[0-9]+$ ]] && ((r1 > r0)); then puts=$((r1 - r0)); src=revision; fi
  ((puts > 0)) || die "$label: no puts completed in the CPU run"
  echo "cpu label=$label conc=$CPU_CONC hz=$hz puts=$puts count_from=$src wrk_requests=$reqs leader_ticks=$((l1 - l0)) follower_ticks=$((f1 - f0)) other_ticks=$((o1 - o0)) ${line#kv }" >>"$RESULTS"
}

# ---------------------------------------------------------------- pyxis
# curl for pyxis members: with TLS it trusts the test CA (wrk does not verify certificates),
# with ACLs it sends the admin token.
PYXIS_CA=""
PYXIS_BEARER=""
pcurl() {
  local args=()
  [[ -z "$PYXIS_CA" ]] || args+=(--cacert "$PYXIS_CA")
  [[ -z "$PYXIS_BEARER" ]] || args+=(-H "Authorization: Bearer $PYXIS_BEARER")
  curl "${args[@]}" "$@"
}
pyxis_rev() { json_get "$(pcurl -fsS --max-time 2 "$1/v1/status")" 'd["revision"]'; }

# Build (BUILD=1, default, a no-op when up to date) and check the binary
# before anything starts, so a missing binary fails in seconds.
prepare_pyxis() {
  if [[ -z "$PYXIS_BIN" ]]; then
    PYXIS_BIN="$ROOT/target/release/pyxis"
    if [[ "$BUILD" == 1 ]]; then
      log "cargo build --release -p pyxis"
      (cd "$ROOT" && cargo build --release -p pyxis) >&2 || die "release build failed"
    fi
  fi
  [[ -x "$PYXIS_BIN" ]] || die "pyxis binary not found at $PYXIS_BIN: run 'cargo build --release -p pyxis' (or set PYXIS_BIN)"
}

# pyxis with ACLs bootstrapped and TLS on: the same run as `pyxis`, under its own label.
run_pyxis-secure() { TLS=1 SECURE=1 run_pyxis; }
# Each half of pyxis-secure alone, to tell their costs apart.
run_pyxis-tls() { TLS=1 SECURE=0 LABEL=pyxis-tls-3node run_pyxis; }
run_pyxis-acl() { TLS=0 SECURE=1 LABEL=pyxis-acl-3node run_pyxis; }

run_pyxis() {
  local secure="${SECURE:-0}" label=pyxis-3node tls="$TLS"
  local bin="$PYXIS_BIN" i l peers="" dir="$W/pyxis" leader="" pids=() info ok=0 tls_args=""
  if [[ "$secure" == 1 ]]; then label=pyxis-secure-3node; dir="$W/pyxis-secure"; fi
  if [[ -n "${LABEL:-}" ]]; then label="$LABEL"; dir="$W/${LABEL%-3node}"; fi
  PYXIS_CA=""; PYXIS_BEARER=""
  mkdir -p "$dir"
  if [[ "$tls" == 1 ]]; then
    "$bin" tls gen "$dir/certs" 2>/dev/null || die "pyxis tls gen $dir/certs failed"
    PYXIS_CA="$dir/certs/ca.pem"
    tls_args="--tls-cert $dir/certs/node.pem --tls-key $dir/certs/node-key.pem --tls-ca $PYXIS_CA"
  fi
  for i in 1 2 3; do
    check_port_free $((PYXIS_BASE_PORT + i))
    peers+="${peers:+,}$i=$(pyxis_url "$i" | sed 's|^http://||')"
  done
  for i in 1 2 3; do
    # not in $(...): start_bg records the PID in PIDS, which cleanup stops
    # shellcheck disable=SC2086 # PYXIS_EXTRA_ARGS is a word list on purpose
    start_bg "$dir/n$i.log" "$MEMBER_CPU" env RUST_LOG="$PYXIS_RUST_LOG" \
      "$bin" server --id "$i" --listen "127.0.0.1:$((PYXIS_BASE_PORT + i))" \
      --peers "$peers" --data-dir "$dir/n$i" $tls_args $PYXIS_EXTRA_ARGS >/dev/null
    pids+=("${PIDS[-1]}")
  done
  log "pyxis: started pids ${pids[*]} ($bin), waiting for a leader"
  local deadline=$((SECONDS + PYXIS_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    for i in 1 2 3; do
      kill -0 "${pids[i-1]}" 2>/dev/null && continue
      tail -n 20 "$dir/n$i.log" >&2
      die "pyxis node $i (pid ${pids[i-1]}) exited during startup; log above ($dir/n$i.log, KEEP=1 keeps it)"
    done
    # every node answers /v1/cluster and all name the same leader
    leader=""; ok=1
    for i in 1 2 3; do
      info=$(pcurl -fsS --max-time 1 "$(pyxis_url "$i")/v1/cluster" 2>/dev/null) || { ok=0; break; }
      l=$(json_get "$info" 'd.get("leader") or ""' 2>/dev/null) || { ok=0; break; }
      [[ -n "$l" ]] || { ok=0; break; }
      [[ -z "$leader" || "$leader" == "$l" ]] || { ok=0; break; }
      leader="$l"
    done
    [[ "$ok" == 1 ]] && break
    sleep 0.2
  done
  if [[ "$ok" != 1 ]]; then
    for i in 1 2 3; do echo "--- node $i: $(pcurl -sS --max-time 1 "$(pyxis_url "$i")/v1/cluster" 2>&1)" >&2; tail -n 5 "$dir/n$i.log" >&2; done
    die "pyxis cluster did not agree on a leader within ${PYXIS_START_TIMEOUT}s (PYXIS_START_TIMEOUT)"
  fi
  [[ "$leader" =~ ^[123]$ ]] || die "pyxis leader id '$leader' is not one of 1..3"
  local url f o
  url=$(pyxis_url "$leader")
  local path_before="$PATH"
  if [[ "$secure" == 1 ]]; then
    local boot
    boot=$(pcurl -fsS --max-time 5 -X POST "$url/v1/acl/bootstrap") || die "pyxis: acl bootstrap failed"
    PYXIS_BEARER=$(json_get "$boot" 'd["secret"]') || die "pyxis: acl bootstrap answered '$boot'"
    # The shared load runs `wrk` by name: a wrapper first on PATH adds the token to every
    # request (kv.lua's rest requests take wrk's default headers).
    mkdir -p "$dir/bin"
    printf '#!/bin/sh\nexec %s -H "Authorization: Bearer %s" "$@"\n' "$(command -v wrk)" "$PYXIS_BEARER" >"$dir/bin/wrk"
    chmod +x "$dir/bin/wrk"
    export PATH="$dir/bin:$PATH"
    # Without the token, data is refused: the load below is measured with ACLs enforced.
    [[ "$(curl -sS -o /dev/null -w '%{http_code}' ${PYXIS_CA:+--cacert "$PYXIS_CA"} -X PUT --data-binary x "$url/v1/kv/bench/anon")" == 401 ]] \
      || die "pyxis-secure: an anonymous put was not refused with 401"
  fi
  f=$((leader % 3 + 1)); o=$((f % 3 + 1))
  # smoke test: a put and a linearizable read through the leader
  local resp
  resp=$(pcurl -fsS --max-time 5 -X PUT --data-binary 'smoke' "$url/v1/kv/bench/smoke") || die "pyxis: PUT $url/v1/kv/bench/smoke failed"
  json_get "$resp" 'int(d["revision"])' >/dev/null || die "pyxis: PUT answered '$resp', expected {\"revision\":N}"
  [[ "$(pcurl -fsS --max-time 5 "$url/v1/kv/bench/smoke")" == smoke ]] || die "pyxis: GET after PUT did not return the value"
  pyxis_rev "$url" >/dev/null || die "pyxis: GET $url/v1/status has no revision"
  log "pyxis: leader node $leader at $url (pid ${pids[leader-1]}), follower node $f (pid ${pids[f-1]})"
  [[ "$secure" == 1 ]] || echo "meta pyxis_bin=$bin, built $(date -r "$bin" -Is), tls=$TLS" >>"$RESULTS"
  [[ "$secure" == 0 ]] || echo "meta pyxis_secure=ACLs bootstrapped (admin token on every request), TLS on the API and between nodes" >>"$RESULTS"

  export WRK_KV_API=rest WRK_REST_PREFIX=/v1/kv/
  window_start "${pids[@]}"
  measure_cpu "$label" "$url" "${pids[leader-1]}" "${pids[f-1]}" "${pids[o-1]}" pyxis_rev "$url"
  "$LOAD_DIR/kv-matrix.sh" "$url" "$label" | tee -a "$RESULTS" >&2
  window_end "$label" "${pids[@]}"
  info=$(pcurl -fsS --max-time 2 "$url/v1/cluster" || echo '{}')
  [[ "$(json_get "$info" 'd.get("leader")' 2>/dev/null)" == "$leader" ]] || log "WARNING: pyxis leader changed during the run: $info"
  export PATH="$path_before"
  PYXIS_CA=""; PYXIS_BEARER=""
  stop_all
}

# ---------------------------------------------------------------- etcd
etcd_rev() {
  json_get "$(curl -fsS --max-time 2 -X POST -d '{}' "$1/v3/maintenance/status")" 'd["header"]["revision"]'
}

run_etcd() {
  command -v etcd >/dev/null || die "etcd not found: apt-get install -y etcd-server etcd-client"
  local etcd_bin url idx f o pids
  etcd_bin=$(command -v etcd)
  if [[ -n "$MEMBER_CPU" ]]; then
    # taskset execs etcd, so the recorded PIDs stay the members' own
    etcd_bin="$W/etcd-pinned"
    printf '#!/bin/sh\nexec taskset -c %s %s "$@"\n' "$MEMBER_CPU" "$(command -v etcd)" >"$etcd_bin"
    chmod +x "$etcd_bin"
  fi
  export BASE_CLIENT="$ETCD_BASE_CLIENT" BASE_PEER="$ETCD_BASE_PEER"
  url=$(ETCD_BIN="$etcd_bin" "$PEERS_DIR/etcd-cluster.sh" start "$ETCD_DIR")
  mapfile -t pids <"$ETCD_DIR/pids"
  idx=$(( ${url##*:} - ETCD_BASE_CLIENT ))
  [[ "$idx" =~ ^[123]$ ]] || die "etcd leader url $url is not a member's"
  f=$((idx % 3 + 1)); o=$((f % 3 + 1))
  log "etcd: leader n$idx at $url (pid ${pids[idx-1]}), follower n$f (pid ${pids[f-1]}); $(etcd --version | head -1)"
  echo "sysinfo label=etcd-3node version=$(etcd --version | sed -n 's/^etcd Version: //p')" >>"$RESULTS"

  export WRK_KV_API=etcd
  window_start "${pids[@]}"
  measure_cpu etcd-3node "$url" "${pids[idx-1]}" "${pids[f-1]}" "${pids[o-1]}" etcd_rev "$url"
  "$LOAD_DIR/kv-matrix.sh" "$url" etcd-3node | tee -a "$RESULTS" >&2
  window_end etcd-3node "${pids[@]}"
  [[ "$("$PEERS_DIR/etcd-cluster.sh" leader "$ETCD_DIR" || true)" == "$url" ]] || log "WARNING: etcd leader changed during the run"
  "$PEERS_DIR/etcd-cluster.sh" stop "$ETCD_DIR"
  unset BASE_CLIENT BASE_PEER
}

# ---------------------------------------------------------------- main
write_run_meta
log "bench/kv.sh: systems '$SYSTEMS', RUNS=$RUNS DURATION=${DURATION}s, scratch $W"
[[ ! " $SYSTEMS " =~ \ pyxis ]] || prepare_pyxis
claim_system_ports
for s in $SYSTEMS; do
  log "=== $s"
  # Dirty pages another process left (a build just before) would be written back during
  # the run and stall every member's log syncs: flush them first.
  sync
  "run_$s"
done
echo "meta load_end=$(foreign_load)" >>"$RESULTS"

block=$(python3 "$BENCH_DIR/kv_report.py" "$RESULTS")
printf '%s\n' "$block"
if [[ -n "$OUT" ]]; then
  mkdir -p "$(dirname "$OUT")"
  printf '\n%s\n' "$block" >>"$OUT"
  log "appended to $OUT"
fi
