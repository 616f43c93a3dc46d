#!/usr/bin/env bash
# Plain pyxis against pyxis with ACLs and TLS (issue 11), paired: ROUNDS rounds of
# `bench/kv.sh` with RUNS=1, the two systems' order swapped every round, so a drift of the
# machine during the sitting hits both sides alike. Prints every round's figures and the
# median of the per-round on/off ratios per op and client count.
#
#   ROUNDS=10 OPS=put CONCS="1 16 64" bench/kv_pair.sh [OUT.md]
#
# Other knobs (DURATION, PIN_SERVERS, KV_PIN_CLIENT, PYXIS_BIN, BUILD) go through to kv.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${ROUNDS:-10}"
OUT="${1:-}"
LOG=$(mktemp -d "${TMPDIR:-/tmp}/kvpair.XXXXXX")

for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then order="pyxis pyxis-secure"; else order="pyxis-secure pyxis"; fi
  echo "round $r/$ROUNDS: $order" >&2
  sync
  RUNS=1 CPU_DURATION="${CPU_DURATION:-5}" SYSTEMS="$order" "$ROOT/bench/kv.sh" \
    >/dev/null 2>"$LOG/round-$r.log" || { cat "$LOG/round-$r.log" >&2; exit 1; }
  grep '^kv-median ' "$LOG/round-$r.log" | sed "s/^/round=$r /" >>"$LOG/medians.txt"
  grep 'other processes used' "$LOG/round-$r.log" | sed "s/^/round $r: /" >&2 || true
done

block=$(python3 - "$LOG/medians.txt" "$ROUNDS" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = dict(re.findall(r'(\w+)=(\S+)', line))
    key = (f['op'], int(f['conc']))
    side = 'on' if f['label'].startswith('pyxis-secure') else 'off'
    rows.setdefault(key, {}).setdefault(int(f['round']), {})[side] = (float(f['rps']), float(f['p99_ms']))
print(f"\n#### Paired rounds, plain vs ACLs+TLS ({sys.argv[2]} rounds, order swapped each round)\n")
print("| op | clients | off req/s (median) | on req/s (median) | on/off per round | median on/off | off p99 ms | on p99 ms |")
print("|---|---|---|---|---|---|---|---|")
for (op, conc), rounds in sorted(rows.items()):
    pairs = [v for _, v in sorted(rounds.items()) if 'on' in v and 'off' in v]
    ratios = [v['on'][0] / v['off'][0] for v in pairs]
    off = statistics.median(v['off'][0] for v in pairs)
    on = statistics.median(v['on'][0] for v in pairs)
    p99off = statistics.median(v['off'][1] for v in pairs)
    p99on = statistics.median(v['on'][1] for v in pairs)
    print(f"| {op} | {conc} | {off:,.0f} | {on:,.0f} | {', '.join(f'{x:.2f}' for x in ratios)} | "
          f"{statistics.median(ratios):.2f}x | {p99off:.2f} | {p99on:.2f} |")
EOF
)
echo "$block"
[[ -z "$OUT" ]] || echo "$block" >>"$OUT"
echo "per-round logs: $LOG" >&2
