#!/usr/bin/env bash
# What segment permissions and the stack guard of ring-3 ELF guests cost:
# kvmini/benches/protection.rs built from this tree and from a scratch
# copy of the commit before they landed (OLD_REV, 5a95a65^), the two
# binaries run in turn RUNS times; prints each figure's median for both
# and their ratio (this tree / the old one), and appends them to
# $KVMINI_BENCH_OUT/facts.tsv.
#
#   bench/protection.sh     # about 2 minutes to build the old copy, plus the runs
#
# The copy is extracted with `git archive` under target/scratch/ and built
# into this tree's target directory, so the dependencies are shared and
# only the old kvmini is compiled again; the copy is removed at the end
# (KEEP_SCRATCH=1 keeps it). Needs /dev/kvm and cc (gcc).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${KVMINI_BENCH_OUT:-$ROOT/target/kvmini-bench}
OLD_REV=${OLD_REV:-5a95a65^}
RUNS=${RUNS:-6}
SCRATCH=$ROOT/target/scratch/old
mkdir -p "$OUT"

fact() { printf '%s\t%s\n' "$1" "$2" >>"$OUT/facts.tsv"; echo "fact $1 = $2"; }
# The benchmark binary cargo builds in the tree at $1.
bench_bin() {
    local bin
    bin=$( (cd "$1" && cargo bench -p kvmini --bench protection --no-run --target-dir "$ROOT/target" 2>&1) |
        sed -n 's/.*Executable [^(]*(\(.*\))$/\1/p' | tail -1)
    case "$bin" in
        /*) echo "$bin" ;;
        ?*) echo "$1/$bin" ;;
    esac
}

if [ ! -d "$SCRATCH" ]; then
    mkdir -p "$SCRATCH"
    git archive "$OLD_REV" | tar -x -C "$SCRATCH"
    cp bench/guests/null.c "$SCRATCH/bench/guests/"
    cp kvmini/benches/protection.rs "$SCRATCH/kvmini/benches/"
    printf '\n[[bench]]\nname = "protection"\nharness = false\n' >>"$SCRATCH/kvmini/Cargo.toml"
fi
[ "${KEEP_SCRATCH:-0}" = 1 ] || trap 'rm -rf "$SCRATCH"' EXIT

echo "building the protection benchmark here and at $OLD_REV..." >&2
new=$(bench_bin "$ROOT")
old=$(bench_bin "$SCRATCH")
[ -f "$new" ] && [ -f "$old" ] || { echo "protection.sh: build failed" >&2; exit 1; }

: >"$OUT/protection.txt"
for _ in $(seq "$RUNS"); do
    echo "new $("$new")" >>"$OUT/protection.txt"
    echo "old $("$old")" >>"$OUT/protection.txt"
done
for figure in elf_call_us flat_call_us elf_lifecycle_us flat_lifecycle_us; do
    m() {
        grep "^$1 " "$OUT/protection.txt" | tr ' ' '\n' | sed -n "s/^$figure=//p" |
            sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
    }
    n=$(m new)
    o=$(m old)
    fact "protection.$figure.now" "$n"
    fact "protection.$figure.before" "$o"
    fact "protection.$figure.ratio" "$(awk -v n="$n" -v o="$o" 'BEGIN { printf "%.3f", n / o }')"
done
fact protection.load "$(cut -d' ' -f1 /proc/loadavg)"
