#!/bin/sh
# Exit 0 when the server answers GET / with 200, 2 (critical) otherwise.
exec python3 - "$NS_ADDRESS" "$NS_PORT" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/", timeout=1) as r:
        print(f"GET / -> {r.status}")
        sys.exit(0 if r.status == 200 else 2)
except Exception as e:
    print(f"GET / failed: {e}")
    sys.exit(2)
PY
