#!/usr/bin/env bash
# By hand, not in CI (tests/fleet_faults.rs covers the same in CI): the four faults of
# docs/fleet.md's fault table through the release `fanout` binary, each followed by a fresh
# process over the same keys, which must answer every key, report cached_without_record 0,
# and leave exactly one claim per key on Redis. Needs redis-server and redis-cli.
#
#   benches/fleet_faults.sh [PORT]
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p idempotency-sdk --features redis --example keys || exit 1
cargo build --release -q -p fanout --features redis || exit 1
bin=${CARGO_TARGET_DIR:-target}/release/examples
fanout_bin=${CARGO_TARGET_DIR:-target}/release/fanout
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
port=${1:-7391}
start() { redis-server --port $port --save "" --appendonly no --dir $d --daemonize yes --pidfile $d/r.pid >/dev/null; sleep 0.3; }
stop() { kill "$(cat $d/r.pid)" 2>/dev/null; sleep 0.3; }
url=redis://127.0.0.1:$port
claims() { redis-cli -p $port --scan --pattern 'idempotency:claim:*' | wc -l; }
check() { # $1 name, $2 json of the fresh process
  python3 - "$1" "$2" "$(claims)" "${3:-20000}" <<'PY'
import json, sys
name, path, claims = sys.argv[1], sys.argv[2], int(sys.argv[3])
j = json.load(open(path))
n = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
ok = j["runs"] + j["cached"] == n and j["cached_without_record"] == 0 and claims == n
print(f"{name}: fresh process runs={j['runs']} cached={j['cached']} cached_without_record={j['cached_without_record']} claims on redis={claims} -> {'OK' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
  [ $? -eq 0 ] || failed=1
}
failed=0
fan() { $fanout_bin --items "${N:-20000}" --redis $url --json "$@"; }

# 1. SIGKILL mid-batch: 200,000 keys minted first (so the fanout only claims), the
# fanout process killed once 30,000 claims are in.
start
$bin/keys --items 200000 --redis $url > $d/d200.txt
base=$(redis-cli -p $port dbsize)
$fanout_bin --digests-from $d/d200.txt --redis $url --json > $d/a.json 2>$d/a.err & p=$!
for _ in $(seq 1000); do [ "$(redis-cli -p $port dbsize)" -gt $((base + 30000)) ] && break; sleep 0.005; done
kill -9 $p; wait $p 2>/dev/null; echo "killed: rc=$? (137 = SIGKILL)"
before=$(claims); echo "sigkill: $before claims when killed"
$fanout_bin --digests-from $d/d200.txt --redis $url --json > $d/b.json 2>$d/b.err; echo "rc=$?"; check sigkill $d/b.json 200000
stop
unset N
# 2. CLIENT KILL every 50 ms
start
(while :; do redis-cli -p $port client kill type normal >/dev/null 2>&1; sleep 0.05; done) & k=$!
for i in 1 2 3; do fan > $d/c$i.json 2>$d/c$i.err; echo "under CLIENT KILL attempt $i rc=$?"; done
kill $k; wait $k 2>/dev/null
echo "client kill: $(claims) claims after the attempts"
fan > $d/c.json 2>$d/c.err; echo "rc=$?"; check client-kill $d/c.json
stop

# 3. Redis paused (SIGSTOP) 7 s, past the 5 s command timeout, once 20,000 claims are in.
start
$bin/keys --items 200000 --redis $url > $d/d200.txt
base=$(redis-cli -p $port dbsize)
$fanout_bin --digests-from $d/d200.txt --redis $url --json > $d/e.json 2>$d/e.err & p=$!
for _ in $(seq 1000); do [ "$(redis-cli -p $port dbsize)" -gt $((base + 20000)) ] && break; sleep 0.005; done
kill -STOP "$(cat $d/r.pid)"; sleep 7; kill -CONT "$(cat $d/r.pid)"
wait $p; echo "paused run rc=$? ($(grep -v 'persistence is off' $d/e.err | tail -1 | cut -c1-250))"
echo "paused: $(claims) claims after it"
$fanout_bin --digests-from $d/d200.txt --redis $url --json > $d/f.json 2>$d/f.err; echo "rc=$?"; check paused $d/f.json 200000
stop

# 4. A foreign value under one claim key before the first trigger
start
$bin/keys --items 20000 --redis $url > $d/digests.txt
target=$(python3 - $d/digests.txt <<'PY'
import hashlib, sys
digest = open(sys.argv[1]).read().split()[10000]
task = "child-task"
h = hashlib.sha256(f"{len(task)}:{task}:{digest}".encode()).digest()[:16]
print("idempotency:claim:{" + h.hex() + "}")
PY
)
redis-cli -p $port set "$target" garbage >/dev/null
$fanout_bin --digests-from $d/digests.txt --redis $url --json > $d/g.json 2>$d/g.err; echo "with a foreign value: rc=$? $(grep -o "idempotency:claim:{[0-9a-f]*}[^;]*" $d/g.err | head -1 | cut -c1-160)"
grep -q "$target" $d/g.err && echo "the error names $target" || echo "ERROR DOES NOT NAME THE KEY"
echo "claims made before it: $(( $(claims) - 1 ))"
redis-cli -p $port del "$target" >/dev/null
$fanout_bin --digests-from $d/digests.txt --redis $url --json > $d/h.json 2>$d/h.err; echo "rc=$?"; check foreign $d/h.json
stop
exit $failed
