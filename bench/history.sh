#!/usr/bin/env bash
# Long run of the e2e history test (issue 7 point 1) outside CI.
#
#   bench/history.sh            # 150 s, 12 clients, release server, >= 50,000 acked writes
#   SECS=40 CLIENTS=8 MIN_ACKS=0 bench/history.sh
#
# It runs `store_history::history_holds_under_kill_and_sigstop` (tests/e2e) with the long
# settings: 12 clients of unique-valued puts and linearizable reads on 8 keys of a 3-node
# cluster while leaders and followers are killed -9, restarted, SIGSTOPped and SIGCONTed,
# then the history checker (tests/harness/src/history/) judges every read and ack. It prints
# the summary (acknowledged writes, faults, violations and their details) and keeps the full
# output, server logs included, in $LOG. Exit status is the test's.
#
# Settings (environment): SECS (150), CLIENTS (12), MIN_ACKS (50000: fewer acknowledged
# writes fail the run), MIN_FAULTS (20), PROFILE (release: the server under test; the test
# binary itself is a debug build), LOG (/tmp/pyxis-history-DATE.log).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECS="${SECS:-150}"
CLIENTS="${CLIENTS:-12}"
MIN_ACKS="${MIN_ACKS:-50000}"
MIN_FAULTS="${MIN_FAULTS:-20}"
PROFILE="${PROFILE:-release}"
LOG="${LOG:-/tmp/pyxis-history-$(date +%Y%m%d-%H%M%S).log}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
TEST='test(=store_history::history_holds_under_kill_and_sigstop)'

log() { printf 'history.sh: %s\n' "$*" >&2; }

case "$PROFILE" in
release) cargo build --release -p pyxis --bin pyxis ;;
debug) cargo build -p pyxis --bin pyxis ;;
*) log "PROFILE must be release or debug, not '$PROFILE'"; exit 2 ;;
esac
export PYXIS_BIN="$TARGET/$PROFILE/pyxis"
cargo nextest run -p e2e --no-run

log "server $PYXIS_BIN ($(stat -c %y "$PYXIS_BIN")), commit $(git rev-parse --short HEAD)"
log "load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores; full output in $LOG"
rc=0
PYXIS_HISTORY_SECS="$SECS" PYXIS_HISTORY_CLIENTS="$CLIENTS" \
  PYXIS_HISTORY_MIN_ACKS="$MIN_ACKS" PYXIS_HISTORY_MIN_FAULTS="$MIN_FAULTS" \
  cargo nextest run -p e2e --no-capture -E "$TEST" >"$LOG" 2>&1 || rc=$?

# The test's own lines, the fault log, and on failure the checker's verdict (counts per
# kind and up to 10 details each); the server logs stay in $LOG.
grep -E '^(history |  \+[0-9.]+s |[0-9]+ violations|[A-Z][A-Za-z]+: |only [0-9]+ |thread .* panicked)' "$LOG" || true
log "load after $(cut -d' ' -f1-3 /proc/loadavg); exit $rc"
exit "$rc"
