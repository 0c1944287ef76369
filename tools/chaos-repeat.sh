#!/usr/bin/env bash
# Runs fault-test suites N times each, one after another, and records each
# run (pass/FAIL, seconds, load average) in target/chaos-repeat/<suite>.tsv;
# the logs of failed runs are kept beside it. Build the test binaries first
# (`cargo test --no-run --test chaos_leader ...`). docs/benchmarks.md has the
# figures of the last 30-run session.
#
#   tools/chaos-repeat.sh 30 chaos_leader chaos_operator chaos_apiserver
set -u
cd "$(dirname "$0")/.."
export DUALMESH_TOOLS_BIN=${DUALMESH_TOOLS_BIN:-$(make -s tools-path)}
n=$1
shift
out=target/chaos-repeat
mkdir -p "$out"
for i in $(seq 1 "$n"); do
  for s in "$@"; do
    bin=$(ls -t target/debug/deps/"$s"-* 2>/dev/null | grep -v '\.d$' | head -1)
    [ -n "$bin" ] || { echo "no test binary for $s: cargo test --no-run --test $s" >&2; exit 2; }
    start=$(date +%s)
    if "$bin" --include-ignored --test-threads=1 > "$out/$s.$i.log" 2>&1; then r=pass; else r=FAIL; fi
    printf '%s\t%s\t%ss\tload %s\t%s\n' "$i" "$r" "$(( $(date +%s) - start ))" \
      "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date +%H:%M:%S)" >> "$out/$s.tsv"
    [ "$r" = pass ] && rm -f "$out/$s.$i.log"
  done
done
