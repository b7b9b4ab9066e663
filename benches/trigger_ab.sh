#!/usr/bin/env bash
# The engine's trigger cost at two commits, measured alternately on this machine, so
# that its load hits both sides alike: `benches/trigger_ab.sh <old-commit> [rounds]`.
# Builds `trigger_cost` (benches/benches/trigger_cost.rs, which uses only the public API)
# at the old commit in a scratch worktree and at the working tree, then runs them in
# turn and prints each run's `fresh_ns cached_ns` per item.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 rounds=${2:-5}
scratch=$(mktemp -d)
trap 'git worktree remove --force "$scratch/tree" >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
git worktree add -q "$scratch/tree" "$old"
cp benches/benches/trigger_cost.rs "$scratch/tree/benches/benches/"
grep -q 'name = "trigger_cost"' "$scratch/tree/benches/Cargo.toml" ||
    printf '\n[[bench]]\nname = "trigger_cost"\nharness = false\n' >> "$scratch/tree/benches/Cargo.toml"
# The binary cargo just built, as an absolute path.
build() {
    (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench -q -p benches --bench trigger_cost --no-run)
    find "$(cd "$1" && realpath "$2")/release/deps" -name 'trigger_cost-*' -type f -executable -printf '%T@ %p\n' |
        sort -n | tail -1 | cut -d' ' -f2
}
old_bin=$(build "$scratch/tree" "$scratch/target")
new_bin=$(build . target)
for _ in $(seq "$rounds"); do
    printf 'old %s\n' "$("$old_bin")"
    printf 'new %s\n' "$("$new_bin")"
done
