#!/bin/sh
# Stops the example server started by start.sh.
set -eu
pidfile="${TMPDIR:-/tmp}/ns-example-$NS_SERVICE/server.pid"
[ -f "$pidfile" ] || { echo "not running"; exit 0; }
kill "$(cat "$pidfile")" 2>/dev/null || true
rm -f "$pidfile"
echo "stopped $NS_SERVICE"
