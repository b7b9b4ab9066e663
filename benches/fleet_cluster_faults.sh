#!/usr/bin/env bash
# By hand, not in CI (crates/sdk/tests/fleet_living_cluster.rs covers the same faults in
# CI, once each): issue 24's probe, as an operator runs it. A 3+3 Redis Cluster on
# loopback (redis-server 7.0), `cluster-node-timeout 2000`, the append-only file fsynced
# always, a password on every node; four release `fanout` processes on the same 20,000
# keys (`--redis <node URLs>`), and mid-batch:
#
#   forced    CLUSTER FAILOVER FORCE on a replica whose master's link to it was just cut
#             (ROUNDS times, 6 by default),
#   killed    kill -9 of a master (the cluster promotes its replica),
#   resharded 2,000 slots moved with redis-cli --cluster reshard.
#
# A healthy round first, for the time a fan-out takes without a fault. Each round checks:
# every worker exits 0; the runs they report created add up to 20,000
# (one per key in all); each reports cached_without_record 0; a fresh process over the
# same keys makes no run, answers 20,000 from cache, cached_without_record 0; no output
# shows the password. Prints how long each fan-out took.
#
#   benches/fleet_cluster_faults.sh [ROUNDS]
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-6}
cargo build --release -q -p fanout --features redis,cluster || exit 1
bin=${CARGO_TARGET_DIR:-target}/release
d=$(mktemp -d)
pw=Probe-s3cret-pw
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$d"; }
trap cleanup EXIT
cli() { local port=$1; shift; redis-cli -a "$pw" --no-auth-warning -p "$port" "$@"; }

# Six nodes on free ports below 55535 (their bus port, +10000, must exist).
ports=($(python3 - <<'PY'
import socket
found = []
while len(found) < 6:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    if port < 55535 and port not in found:
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", port + 10000)); found.append(port)
        except OSError:
            pass
        b.close()
print(" ".join(map(str, found)))
PY
))
for port in "${ports[@]}"; do
    mkdir -p "$d/$port"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$d/$port" --cluster-enabled yes \
        --cluster-config-file "$d/$port/nodes.conf" --cluster-node-timeout 2000 --save "" \
        --appendonly yes --appendfsync always --requirepass "$pw" --masterauth "$pw" \
        --repl-diskless-sync-delay 0 >> "$d/servers.log" 2>&1 &
    pids+=($!)
done
for port in "${ports[@]}"; do for _ in $(seq 100); do cli "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done; done
redis-cli -a "$pw" --no-auth-warning --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 1 --cluster-yes > "$d/create.log" || exit 1
# Every live node says the cluster is ok, and every replica is in sync, not loading.
wait_ok() {
    for _ in $(seq 600); do
        local ok=1
        for port in "$@"; do
            cli "$port" cluster info 2>/dev/null | grep -q cluster_state:ok || ok=0
            local repl; repl=$(cli "$port" info replication 2>/dev/null)
            case "$repl" in *role:slave*) echo "$repl" | grep -q master_link_status:up || ok=0 ;; esac
            cli "$port" dbsize 2>/dev/null | grep -q '^[0-9]' || ok=0
        done
        [ $ok -eq 1 ] && return 0
        sleep 0.1
    done
    echo "cluster not ok"; return 1
}
live=("${ports[@]}")
wait_ok "${live[@]}"
sleep 2
urls=$(printf "redis://:$pw@127.0.0.1:%s," "${ports[@]}"); urls=${urls%,}
# A master (with a replica) as the first live node sees them: "master replica".
pair() {
    cli "${live[0]}" cluster nodes | python3 -c '
import sys
lines = [l.split() for l in sys.stdin if l.strip()]
masters = {l[0]: l[1].split("@")[0].rsplit(":", 1)[1] for l in lines if "master" in l[2] and "fail" not in l[2] and len(l) > 8}
for l in lines:
    if "slave" in l[2] and "fail" not in l[2] and l[3] in masters:
        print(masters[l[3]], l[1].split("@")[0].rsplit(":", 1)[1]); break'
}
failed=0
round() { # $1 name, $2 prefix, $3 port watched, $4 fault command
    local name=$1 prefix=$2 watched=$3 fault=$4
    local base; base=$(cli "$watched" dbsize)
    local started; started=$(date +%s%N)
    local workers=()
    for w in 1 2 3 4; do
        IDEMPOTENCY_REDIS_PREFIX=$prefix "$bin/fanout" --items 20000 --redis "$urls" --json > "$d/$prefix$w.json" 2> "$d/$prefix$w.err" &
        workers+=($!)
    done
    for _ in $(seq 2000); do [ "$(cli "$watched" dbsize)" -gt $((base + 3000)) ] && break; sleep 0.005; done
    eval "$fault"
    local codes=()
    for p in "${workers[@]}"; do wait "$p"; codes+=($?); done
    local took=$(( ($(date +%s%N) - started) / 1000000 ))
    IDEMPOTENCY_REDIS_PREFIX=$prefix "$bin/fanout" --items 20000 --redis "$urls" --json > "$d/${prefix}fresh.json" 2> "$d/${prefix}fresh.err"
    python3 - "$d" "$prefix" "$name" "$pw" "$took" "${codes[@]}" <<'PY' || failed=1
import json, sys
d, prefix, name, pw, took, codes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
texts = [open(f"{d}/{prefix}{w}.{ext}").read() for w in ["1", "2", "3", "4", "fresh"] for ext in ["json", "err"]]
ok = all(c == "0" for c in codes) and not any(pw in t for t in texts)
outs = []
for w in "1234":
    try:
        outs.append(json.load(open(f"{d}/{prefix}{w}.json")))
    except Exception:
        ok = False
created = sum(o["runs"] for o in outs)
orphans = sum(o["cached_without_record"] for o in outs)
fresh = json.load(open(f"{d}/{prefix}fresh.json"))
ok = ok and created == 20000 and orphans == 0 and (fresh["runs"], fresh["cached"], fresh["cached_without_record"]) == (0, 20000, 0)
print(f"{name}: exit codes {' '.join(codes)}; runs created {created} (per worker {[o['runs'] for o in outs]}); "
      f"cached_without_record {orphans}; fresh process runs={fresh['runs']} cached={fresh['cached']} "
      f"without_record={fresh['cached_without_record']}; {took} ms -> {'OK' if ok else 'FAIL'}")
if not ok:
    for w in "1234":
        err = open(f"{d}/{prefix}{w}.err").read().strip().splitlines()
        if err:
            print(f"  worker {w}: {err[-1][:300]}")
sys.exit(0 if ok else 1)
PY
}

read -r master _ < <(pair)
round "healthy" "healthy:" "$master" "true"

for r in $(seq "$rounds"); do
    read -r master replica < <(pair)
    round "forced $r" "forced$r:" "$master" "cli $master client kill type replica >/dev/null; sleep 0.1; cli $replica cluster failover force >/dev/null"
    wait_ok "${live[@]}"; sleep 1
done

read -r master replica < <(pair)
for i in "${!ports[@]}"; do [ "${ports[$i]}" = "$master" ] && victim=${pids[$i]}; done
round "killed" "killed:" "$master" "kill -9 $victim"
live=($(for p in "${ports[@]}"; do [ "$p" != "$master" ] && echo "$p"; done))
wait_ok "${live[@]}"

read -r from _ < <(pair)
to=$(cli "${live[0]}" cluster nodes | awk -v f="$from" '$3 ~ /master/ && $3 !~ /fail/ && NF > 8 { split($2, a, "@"); n = split(a[1], b, ":"); if (b[n] != f) { print b[n]; exit } }')
from_id=$(cli "$from" cluster myid); to_id=$(cli "$to" cluster myid)
round "resharded" "resharded:" "$from" "redis-cli -a $pw --no-auth-warning --cluster reshard 127.0.0.1:$from --cluster-from $from_id --cluster-to $to_id --cluster-slots 2000 --cluster-yes > $d/reshard.log 2>&1 || echo 'reshard failed'"

exit $failed
