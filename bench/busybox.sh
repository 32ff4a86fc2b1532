#!/usr/bin/env bash
# Busybox's sha256sum and wc of a 64 MiB file, in kvmini and natively,
# taken in turn ROUNDS times; prints the median wall times, their ratio,
# kvmini's system calls per second and exits per MiB (from --stats), and
# appends the figures to $KVMINI_BENCH_OUT/facts.tsv (bench/run-all.sh reads
# them). The outputs of the two sides are compared: a run whose output
# differs fails.
#
#   bench/busybox.sh            # needs target/release/kvmini (KVMINI_BIN)
#
# Needs /dev/kvm, busybox (busybox-static) and 64 MiB free under
# target/kvmini-bench (removed at the end).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${KVMINI_BENCH_OUT:-$ROOT/target/kvmini-bench}
KVMINI=${KVMINI_BIN:-$ROOT/target/release/kvmini}
ROUNDS=${ROUNDS:-5}
BUSYBOX=$(command -v busybox || true)
mkdir -p "$OUT"

if [ -z "$BUSYBOX" ]; then
    echo "busybox.sh: no busybox (apt-get install busybox-static); skipped" >&2
    exit 0
fi
if [ ! -x "$KVMINI" ]; then
    echo "busybox.sh: no $KVMINI (cargo build --release -p kvmini-cli)" >&2
    exit 1
fi

DIR=$(mktemp -d "$OUT/busybox.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
head -c $((64 << 20)) /dev/urandom >"$DIR/file"
# Warm the page cache for both sides.
cat "$DIR/file" >/dev/null

now() { date +%s%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
fact() { printf '%s\t%s\n' "$1" "$2" >>"$OUT/facts.tsv"; echo "fact $1 = $2"; }

for applet in sha256sum wc; do
    : >"$DIR/native.ms"
    : >"$DIR/kvmini.ms"
    for _ in $(seq "$ROUNDS"); do
        t0=$(now)
        (cd "$DIR" && "$BUSYBOX" "$applet" file) >"$DIR/native.out"
        t1=$(now)
        "$KVMINI" run --stats --dir "$DIR:/d:ro" --cwd /d "$BUSYBOX" -- "$applet" file \
            >"$DIR/kvmini.out" 2>"$DIR/stats.txt"
        t2=$(now)
        cmp -s "$DIR/native.out" "$DIR/kvmini.out" ||
            { echo "busybox.sh: $applet's output differs in kvmini" >&2; exit 1; }
        echo "$(((t1 - t0) / 1000))" | awk '{ print $1 / 1000 }' >>"$DIR/native.ms"
        echo "$(((t2 - t1) / 1000))" | awk '{ print $1 / 1000 }' >>"$DIR/kvmini.ms"
    done
    native=$(median <"$DIR/native.ms")
    kvmini=$(median <"$DIR/kvmini.ms")
    exits=$(grep -o '[0-9]* exits' "$DIR/stats.txt" | head -1 | cut -d' ' -f1)
    calls=$(grep -o 'syscall [0-9]*' "$DIR/stats.txt" | head -1 | cut -d' ' -f2)
    fact "busybox.$applet.native_ms" "$native"
    fact "busybox.$applet.kvmini_ms" "$kvmini"
    fact "busybox.$applet.ratio" "$(awk -v k="$kvmini" -v n="$native" 'BEGIN { printf "%.2f", k / n }')"
    fact "busybox.$applet.syscalls" "${calls:-nan}"
    fact "busybox.$applet.syscalls_per_s" "$(awk -v c="${calls:-0}" -v k="$kvmini" 'BEGIN { printf "%.0f", c / (k / 1000) }')"
    fact "busybox.$applet.exits_per_mib" "$(awk -v e="${exits:-0}" 'BEGIN { printf "%.1f", e / 64 }')"
done
fact busybox.load "$(cut -d' ' -f1 /proc/loadavg)"
