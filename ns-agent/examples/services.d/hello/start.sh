#!/bin/sh
# Starts the example server in the background (the agent waits for this script, not for the
# server) and records its pid. Running it again while the server is up changes nothing.
set -eu
run="${TMPDIR:-/tmp}/ns-example-$NS_SERVICE"
mkdir -p "$run"
if [ -f "$run/server.pid" ] && kill -0 "$(cat "$run/server.pid")" 2>/dev/null; then
    echo "already running as $(cat "$run/server.pid")"
    exit 0
fi
cd "$(dirname "$0")/www"
# The server's output goes to a file: it must not hold the agent's pipes.
nohup python3 -m http.server "$NS_PORT" --bind "$NS_ADDRESS" >"$run/server.log" 2>&1 &
echo $! >"$run/server.pid"
echo "started $NS_SERVICE ($NS_VERSION) on $NS_ADDRESS:$NS_PORT as $!"
