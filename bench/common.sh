#!/usr/bin/env bash
# Pieces shared by bench/kv.sh and bench/watch.sh; sourced after ../shared/bench/peers/lib.sh
# (log, die, stop_all, check_port_free). Each script sets W, ETCD_DIR, ETCD_BASE_* and
# PYXIS_BASE_PORT before `cleanup` can run.

# The e2e harness (tests/harness/src/ports.rs) draws ports from below the
# ephemeral range (21768-32767 here), which holds ours too, and skips any port
# with a claim file naming a live pid. Claim ours the same way for the run.
CLAIM_DIR="${TMPDIR:-/tmp}/pyxis-harness-ports"
CLAIMS=()
claim_port() {
  local port="$1" f="$CLAIM_DIR/$1" owner
  mkdir -p "$CLAIM_DIR"
  if ! (set -o noclobber; echo "$$" >"$f") 2>/dev/null; then
    owner=$(cat "$f" 2>/dev/null || true)
    if [[ "$owner" =~ ^[0-9]+$ ]] && [[ "$owner" != "$$" ]] && kill -0 "$owner" 2>/dev/null; then
      die "port $port is claimed by pid $owner (a test run?): wait for it, or move PYXIS_BASE_PORT / ETCD_BASE_*"
    fi
    echo "$$" >"$f"
  fi
  CLAIMS+=("$f")
  check_port_free "$port"
}

# cleanup: stop everything this run started, release its port claims, drop the scratch dir.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  local c
  for c in "${CLAIMS[@]}"; do [[ "$(cat "$c" 2>/dev/null)" == "$$" ]] && rm -f "$c"; done
  if [[ -e "$ETCD_DIR/pids" ]]; then
    BASE_CLIENT="$ETCD_BASE_CLIENT" BASE_PEER="$ETCD_BASE_PEER" \
      "$PEERS_DIR/etcd-cluster.sh" stop "$ETCD_DIR" || true
  fi
  if [[ "${KEEP:-0}" == 1 ]]; then log "scratch kept in $W"; else rm -rf "$W"; fi
  exit "$rc"
}

# json_get JSON EXPR : evaluate a python expression over the parsed JSON `d`
json_get() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

# foreign_load: the load average and any other process above 10% CPU, to spot spoiled runs.
foreign_load() {
  echo "load $(cut -d' ' -f1-3 /proc/loadavg); busy others: $(top -b -n1 -w 200 | awk -v me="$$" 'NR>7 && $9+0 > 10 && $1 != me {printf "%s(%s%%) ", $12, $9}')"
}

# busy_ticks: user+nice+system ticks of the whole machine (/proc/stat).
busy_ticks() { awk '/^cpu /{print $2+$3+$4; exit}' /proc/stat; }

# write_run_meta: the run's date, machine, commit and command line, as `meta` lines in $RESULTS.
write_run_meta() {
  local commit
  commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  [[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]] || commit+="-dirty"
  {
    echo "meta date=$(date -Is)"
    echo "meta nproc=$(nproc)"
    echo "meta kernel=$(uname -r)"
    echo "meta commit=$commit"
    echo "meta cmd=$CMDLINE"
    echo "meta load_start=$(foreign_load)"
  } >>"$RESULTS"
}

# claim_system_ports: claims the ports of every system in $SYSTEMS for this run.
claim_system_ports() {
  local s i pyxis_claimed=0
  for s in $SYSTEMS; do
    case "$s" in
    pyxis | pyxis-secure | pyxis-tls | pyxis-acl)
      # both run on the same ports, one after the other
      [[ "$pyxis_claimed" == 1 ]] || for i in 1 2 3; do claim_port $((PYXIS_BASE_PORT + i)); done
      pyxis_claimed=1 ;;
    etcd) for i in 1 2 3; do claim_port $((ETCD_BASE_CLIENT + i)); claim_port $((ETCD_BASE_PEER + i)); done ;;
    *) die "SYSTEMS: unknown system '$s'" ;;
    esac
  done
}

# pyxis_url N: the HTTP address of pyxis member N (https with TLS=1, see kv.sh).
pyxis_url() {
  local scheme=http
  [[ "${TLS:-0}" == 1 ]] && scheme=https
  echo "$scheme://127.0.0.1:$((PYXIS_BASE_PORT + $1))"
}
