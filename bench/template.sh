#!/usr/bin/env bash
# Template propagation (issue 10): from the store's acknowledgement of a change to the file
# ns-agent renders and to nginx serving the new backend, and nginx's own reload time apart.
#
#   bench/template.sh [OUT.md]          (N=200 changes of each kind by default)
#
# Starts, on loopback, all stopped by PID on exit:
#   - one pyxis store node (release build), port TEMPLATE_BASE_PORT+1;
#   - a backend nginx serving two server blocks, bodies "A" (port +3) and "B" (port +4);
#   - the front nginx under test (own prefix in the scratch dir, port +2), proxying / to the
#     upstream `web` that the agent renders into upstream.conf;
#   - one ns-agent (release build, API on port +5) whose agent.toml has one top-level
#     [[templates]] block: templates/nginx-upstream.conf.tera, wait = { min = "0ms", max = "1s" },
#     check = "nginx -t -q ...", command (its reload) = "nginx -s reload ...".
# Then bench/template_latency.py times N registrations and N traffic policy changes (weights),
# stops the agent, times N bare `nginx -s reload`s, and prints one markdown table, appended to
# OUT.md when given. Ports are claimed as bench/kv.sh does (bench/README.md). The machine must
# be quiet: figures taken while something compiles are noise (see the "busy others" lines).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT/bench"
PEERS_DIR="${PEERS_DIR:-$ROOT/../shared/bench/peers}"
[[ -r "$PEERS_DIR/lib.sh" ]] || PEERS_DIR=/work/shared/bench/peers
[[ -r "$PEERS_DIR/lib.sh" ]] || { echo "shared peer scripts not found at $PEERS_DIR (set PEERS_DIR)" >&2; exit 1; }
export BENCH_TMP="${BENCH_TMP:-${TMPDIR:-/tmp}/pyxisbench}"
# shellcheck source=/dev/null
source "$PEERS_DIR/lib.sh"
# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"

OUT="${1:-}"
N="${N:-200}"
BUILD="${BUILD:-1}"
TEMPLATE_BASE_PORT="${TEMPLATE_BASE_PORT:-24880}"
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive whole number, not '$N'"
[[ "$TEMPLATE_BASE_PORT" =~ ^[0-9]+$ ]] || die "TEMPLATE_BASE_PORT must be a port number"

for tool in curl python3; do command -v "$tool" >/dev/null || die "$tool not found"; done
NGINX="$(command -v nginx || true)"
[[ -n "$NGINX" ]] || for d in /usr/sbin /sbin /usr/local/sbin; do [[ -x "$d/nginx" ]] && NGINX="$d/nginx" && break; done
[[ -n "$NGINX" ]] || die "nginx not found: apt-get install -y nginx"
CMDLINE="N=$N bench/template.sh${OUT:+ $OUT}"

if [[ "$BUILD" == 1 ]]; then
  log "release build of pyxis and ns-agent"
  (cd "$ROOT" && cargo build --release -p pyxis -p ns-agent) >&2 || die "release build failed"
fi
for b in pyxis ns-agent; do [[ -x "$BIN_DIR/$b" ]] || die "$BIN_DIR/$b not found (BUILD=1 or BIN_DIR)"; done

W=$(mk_workdir template)
ETCD_DIR="$W/no-etcd" # common.sh's cleanup stops an etcd cluster only if this holds pids
RESULTS="$W/results.txt"
: >"$RESULTS"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STORE_PORT=$((TEMPLATE_BASE_PORT + 1))
FRONT_PORT=$((TEMPLATE_BASE_PORT + 2))
A_PORT=$((TEMPLATE_BASE_PORT + 3))
B_PORT=$((TEMPLATE_BASE_PORT + 4))
AGENT_PORT=$((TEMPLATE_BASE_PORT + 5))
for p in "$STORE_PORT" "$FRONT_PORT" "$A_PORT" "$B_PORT" "$AGENT_PORT"; do claim_port "$p"; done
STORE="http://127.0.0.1:$STORE_PORT"

write_run_meta
echo "meta nginx=$("$NGINX" -v 2>&1 | sed 's|^nginx version: ||')" >>"$RESULTS"

# nginx_conf PREFIX HTTP_BLOCK : a private nginx config (no system file read or written).
nginx_conf() {
  local p="$1"
  mkdir -p "$p/tmp"
  cat >"$p/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $p/nginx.pid;
error_log $p/error.log notice;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $p/tmp/body;
  proxy_temp_path $p/tmp/proxy;
  fastcgi_temp_path $p/tmp/fastcgi;
  uwsgi_temp_path $p/tmp/uwsgi;
  scgi_temp_path $p/tmp/scgi;
$2
}
EOF
}
nginx_args() { echo "-p $1 -c $1/nginx.conf -e $1/error.log"; }

# wait_tcp PORT PID WHAT : until PORT accepts connections, or die if PID exits first.
wait_tcp() {
  local i
  for i in $(seq 300); do
    kill -0 "$2" 2>/dev/null || die "$3 exited during startup"
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$3 did not listen on $1 within 30 s"
}

log "store: one pyxis node on $STORE"
start_bg "$W/store.log" "" env RUST_LOG=warn "$BIN_DIR/pyxis" server --id 1 \
  --listen "127.0.0.1:$STORE_PORT" --data-dir "$W/store" >/dev/null
wait_http "$STORE/healthz" 30 || { tail -n 20 "$W/store.log" >&2; die "store not healthy within 30 s"; }
echo "meta pyxis_bin=$BIN_DIR/pyxis, built $(date -r "$BIN_DIR/pyxis" -Is)" >>"$RESULTS"

log "backends: nginx serving A on $A_PORT and B on $B_PORT"
nginx_conf "$W/backends" "  server { listen 127.0.0.1:$A_PORT; location / { return 200 \"A\n\"; } }
  server { listen 127.0.0.1:$B_PORT; location / { return 200 \"B\n\"; } }"
# shellcheck disable=SC2046
start_bg "$W/backends.log" "" "$NGINX" $(nginx_args "$W/backends") >/dev/null
wait_tcp "$B_PORT" "${PIDS[-1]}" "backend nginx"

# The agent's first render needs an instance to show; r0 is on backend A.
curl -fsS --max-time 5 -X PUT -H 'content-type: application/json' \
  --data "{\"address\":\"127.0.0.1\",\"port\":$A_PORT,\"datacenter\":\"dc1\",\"node\":\"bench\",\"version\":\"v1\"}" \
  "$STORE/v1/services/web/instances/r0" >/dev/null || die "store: PUT of instance r0 failed"

FRONT="$W/front"
UPSTREAM="$FRONT/upstream.conf"
log "front nginx under test on $FRONT_PORT (prefix $FRONT)"
nginx_conf "$FRONT" "  include $UPSTREAM;
  server {
    listen 127.0.0.1:$FRONT_PORT;
    location / { proxy_pass http://web; proxy_next_upstream error timeout; }
  }"
# Until the agent's first render, nginx needs some upstream `web` to start with.
printf 'upstream web {\n    server 127.0.0.1:%s;\n}\n' "$A_PORT" >"$UPSTREAM"
# shellcheck disable=SC2046
start_bg "$W/front.log" "" "$NGINX" $(nginx_args "$FRONT") >/dev/null
wait_tcp "$FRONT_PORT" "${PIDS[-1]}" "front nginx"
CHECK="$NGINX -t -q $(nginx_args "$FRONT")"
RELOAD="$NGINX -s reload $(nginx_args "$FRONT")"

log "agent: one top-level template, wait.min = 0"
mkdir -p "$W/agent/services.d"
cp "$ROOT/templates/nginx-upstream.conf.tera" "$W/agent/upstream.conf.tera"
cat >"$W/agent/agent.toml" <<EOF
node = "bench"
datacenter = "dc1"
store = ["127.0.0.1:$STORE_PORT"]
services_dir = "services.d"
http = "127.0.0.1:$AGENT_PORT"

[[templates]]
source = "upstream.conf.tera"
dest = "$UPSTREAM"
check = "$CHECK"
command = "$RELOAD"
wait = { min = "0ms", max = "1s" }
mode = "0644"
EOF
start_bg "$W/agent.log" "" env RUST_LOG=warn NO_COLOR=1 "$BIN_DIR/ns-agent" --config "$W/agent/agent.toml" >/dev/null
AGENT_PID="${PIDS[-1]}"

log "timing $N registrations and $N traffic policy changes"
line=$(timeout $((60 + N * 2)) python3 "$BENCH_DIR/template_latency.py" agent --store "$STORE" \
  --dest "$UPSTREAM" --nginx "$FRONT_PORT" --backends "A=$A_PORT,B=$B_PORT" --n "$N") \
  || { tail -n 20 "$W/agent.log" >&2; die "template_latency.py agent failed"; }
printf '%s\n' "$line" >>"$RESULTS"
kill -0 "$AGENT_PID" 2>/dev/null || die "the agent exited during the run"
# The agent's own account of the template: how many files it installed, and its last error.
status=$(curl -fsS --max-time 5 "http://127.0.0.1:$AGENT_PORT/v1/agent/status") || die "agent status failed"
echo "meta agent_template=$(json_get "$status" '"%s installs, last_error %s" % (d["templates"][0]["installs"], (d["templates"][0]["last_error"] or {}).get("message", "none"))')" >>"$RESULTS"
# A failed check, reload or render shows in the agent's log (RUST_LOG=warn).
warns=$(grep -c -E '\b(WARN|ERROR)\b' "$W/agent.log" || true)
echo "meta agent_log_warnings=${warns:-0}" >>"$RESULTS"
stop_pid "$AGENT_PID"

log "timing $N bare nginx reloads (agent stopped)"
line=$(timeout $((60 + N)) python3 "$BENCH_DIR/template_latency.py" reload --dest "$UPSTREAM" \
  --nginx "$FRONT_PORT" --backends "A=$A_PORT,B=$B_PORT" --n "$N" --check "$CHECK" --reload "$RELOAD") \
  || die "template_latency.py reload failed"
printf '%s\n' "$line" >>"$RESULTS"
echo "meta load_end=$(foreign_load)" >>"$RESULTS"

block=$(python3 "$BENCH_DIR/template_latency.py" report "$RESULTS")
printf '%s\n' "$block"
if [[ -n "$OUT" ]]; then mkdir -p "$(dirname "$OUT")"; printf '\n%s\n' "$block" >>"$OUT"; log "appended to $OUT"; fi
