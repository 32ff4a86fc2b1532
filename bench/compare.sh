#!/usr/bin/env bash
# Runs kvmini's benchmarks (kvmini/benches/) and prints one table: each
# figure measured for kvmini and, in the same run, for its floor (a VM on
# kvm-ioctls alone, native system calls, or the unbatched calls), their
# ratio, the target and whether it is met.
#
#   bench/compare.sh                       # about 6 minutes on 2 cores, plus the builds
#   WARM_UP=1 MEASURE=5 bench/compare.sh   # longer, steadier
#   PROTECTION=0 bench/compare.sh          # without building the old kvmini
#
# Besides kvmini/benches/, it runs bench/busybox.sh (busybox's sha256sum
# and wc of a 64 MiB file) and bench/protection.sh (the cost of memory
# permissions, against a scratch build of the commit before them). Every
# figure of docs/performance.md's results table comes from one run of it.
#
# Needs /dev/kvm, cc (gcc) for the C guests under bench/guests/, and about
# 600 MiB free under /tmp (TMPDIR) for the file figures. Everything it
# writes goes under target/kvmini-bench/: criterion's data, facts.tsv (the
# figures that are not times), the benchmarks' own output (log.txt) and the
# table (table.txt). Method and results: docs/performance.md.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/target/kvmini-bench"
WARM_UP=${WARM_UP:-0.5}
MEASURE=${MEASURE:-2}
SAMPLES=${SAMPLES:-10}

if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    echo "compare.sh: /dev/kvm is not usable here; nothing to measure" >&2
    exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT"
export KVMINI_BENCH_OUT="$OUT"
export CRITERION_HOME="$OUT/criterion"
export KVMINI_BIN="$ROOT/target/release/kvmini"
LOG="$OUT/log.txt"

started=$(date +%s)
host() {
    echo "host: $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "building (release)..." >&2
cargo build --release -p kvmini-cli >&2    # the kvmini binary, KVMINI_BIN
cargo bench -p kvmini --no-run >&2

# Other work on a small machine moves side-by-side figures apart: where
# allowed (root), the benchmarks run at the highest priority. NICE=0 turns
# that off.
NICE=${NICE:--20}
if ! nice -n "$NICE" true 2>/dev/null; then
    NICE=0
fi

load_before=$(load)
for bench in hypercall syscall lifecycle startup io memory scale; do
    echo "running benches/$bench.rs ($(($(date +%s) - started)) s so far)..." >&2
    nice -n "$NICE" cargo bench -q -p kvmini --bench "$bench" -- \
        --warm-up-time "$WARM_UP" --measurement-time "$MEASURE" \
        --sample-size "$SAMPLES" --noplot >>"$LOG" 2>&1 ||
        { echo "benches/$bench.rs failed; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
done
load_after=$(load)
echo "running bench/busybox.sh ($(($(date +%s) - started)) s so far)..." >&2
nice -n "$NICE" bench/busybox.sh >>"$LOG" 2>&1 ||
    { echo "bench/busybox.sh failed; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
if [ "${PROTECTION:-1}" != 0 ]; then
    echo "running bench/protection.sh ($(($(date +%s) - started)) s so far)..." >&2
    nice -n "$NICE" bench/protection.sh >>"$LOG" 2>&1 ||
        { echo "bench/protection.sh failed; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
fi
load_end=$(load)

# The median time of one iteration of a criterion benchmark, in ns.
median() {
    local f="$CRITERION_HOME/$1/new/estimates.json"
    if [ -f "$f" ]; then
        grep -o '"median":{"confidence_interval":{[^}]*},"point_estimate":[^,]*' "$f" |
            sed 's/.*"point_estimate"://'
    else
        echo nan
    fi
}
# A figure from facts.tsv (the last value written under that name).
fact() {
    awk -F'\t' -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? "nan" : v) }' "$OUT/facts.tsv"
}
# Arithmetic on decimal numbers.
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }

TABLE="$OUT/table.txt"
: >"$TABLE"
# row FIGURE KVMINI FLOOR RATIO TARGET  (TARGET: <=X, >=X, or - for none;
# the ratio is checked against it unless CHECK names another value)
row() {
    local verdict="-"
    local check=${6:-$4}
    case "$5" in
        "<="*) verdict=$(awk -v v="$check" -v t="${5#<=}" 'BEGIN { print (v + 0 <= t + 0 ? "pass" : "FAIL") }') ;;
        ">="*) verdict=$(awk -v v="$check" -v t="${5#>=}" 'BEGIN { print (v + 0 >= t + 0 ? "pass" : "FAIL") }') ;;
    esac
    printf '%-50s %12s %12s %8s %9s %6s\n' "$1" "$2" "$3" "$4" "$5" "$verdict" >>"$TABLE"
}

printf '%-50s %12s %12s %8s %9s %6s\n' figure kvmini floor ratio target result >>"$TABLE"
printf '%s\n' "$(printf '%.0s-' {1..102})" >>"$TABLE"

# 1. Null hypercall round trip (µs per call).
for r in 3 0; do
    k=$(calc "$(median null_hypercall_ring$r/kvmini) / 1000" 2)
    f=$(calc "$(median null_hypercall_ring$r/floor) / 1000" 2)
    row "1 null hypercall, ring $r (us/call)" "$k" "$f" "$(calc "$k / $f")" "<=1.03"
    # The same, paired: runs in turn; median times, median of the ratios.
    k=$(calc "$(fact paired.null_hypercall_ring$r.kvmini_us)" 2)
    f=$(calc "$(fact paired.null_hypercall_ring$r.floor_us)" 2)
    row "1 null hypercall, ring $r, paired (us/call)" "$k" "$f" "$(calc "$(fact paired.null_hypercall_ring$r.kvmini_ratio)")" "<=1.03"
done

# 1b. A Linux program's system call, paired (µs per call).
k=$(calc "$(fact paired.linux_syscall.kvmini_us)" 2)
f=$(calc "$(fact paired.linux_syscall.floor_us)" 2)
row "1b Linux system call, paired (us/call)" "$k" "$f" "$(calc "$(fact paired.linux_syscall.kvmini_ratio)")" "<=1.10"
k=$(calc "$(median linux_syscall/kvmini) / 1000" 2)
f=$(calc "$(median linux_syscall/floor) / 1000" 2)
row "1b Linux system call (us/call)" "$k" "$f" "$(calc "$k / $f")" "<=1.10"

# 2. Lifecycle: create, load, run hello (15 exits), destroy (ms).
f3=$(calc "$(median lifecycle_ring3/floor) / 1e6")
k=$(calc "$(median lifecycle_ring3/kvmini_flat) / 1e6")
row "2 lifecycle, flat hello, ring 3 (ms)" "$k" "$f3" "$(calc "$k / $f3")" "<=1.10"
k=$(calc "$(median lifecycle_ring3/kvmini_elf) / 1e6")
row "2 lifecycle, ELF hello, ring 3 (ms)" "$k" "$f3" "$(calc "$k / $f3")" "<=1.10"
f0=$(calc "$(median lifecycle_ring0/floor) / 1e6")
k=$(calc "$(median lifecycle_ring0/kvmini_flat) / 1e6")
row "2 lifecycle, flat hello, ring 0 (ms)" "$k" "$f0" "$(calc "$k / $f0")" "<=1.10"
# The same, paired: the breakdown pass runs the kinds in turn.
for r in 3 0; do
    k=$(calc "$(fact breakdown.ring$r.kvmini.total) / 1000")
    f=$(calc "$(fact breakdown.ring$r.floor.total) / 1000")
    row "2 lifecycle, flat hello, ring $r, paired (ms)" "$k" "$f" "$(calc "$k / $f")" "<=1.10"
done

# 3. Reuse: run + reset against a fresh lifecycle (µs); ratio = speedup.
for g in exit hello; do
    k=$(calc "$(median reuse_$g/reset_run) / 1000" 1)
    f=$(calc "$(median reuse_$g/fresh) / 1000" 1)
    row "3 reuse, $g: run+reset vs fresh (us)" "$k" "$f" "$(calc "$f / $k" 1)x" ">=20" "$(calc "$f / $k" 1)"
    # The same, paired: rounds of one of each, in turn.
    k=$(calc "$(fact reuse.$g.run_us) + $(fact reuse.$g.reset_us)" 1)
    f=$(calc "$(fact reuse.$g.fresh_us)" 1)
    row "3 reuse, $g, paired (us)" "$k" "$f" "$(calc "$f / $k" 1)x" ">=20" "$(calc "$f / $k" 1)"
done

# 3b. Starting at all: whole processes, paired (ms).
f=$(calc "$(fact startup.floor_ms)")
k=$(calc "$(fact startup.kvmini_ms)")
row "3b kvmini run hello.elf, process (ms)" "$k" "$f" "$(calc "$(fact startup.kvmini_ratio)")" "<=1.25"
k=$(calc "$(fact startup.kvmini_noseccomp_ms)")
f=$(calc "$(fact startup.floor_noseccomp_ms)")
row "3b the same, no seccomp either side (ms)" "$k" "$f" "$(calc "$k / $f")" "-"
k=$(calc "$(fact startup.kvmini_version_ms)")
f=$(calc "$(fact startup.noop_ms)")
row "3b kvmini --version (ms; floor: empty process)" "$k" "$f" "$(calc "$k / $f")" "-"
k=$(calc "$(fact startup.kvmini_busybox_true_ms)")
f=$(calc "$(fact startup.native_busybox_true_ms)")
row "3b kvmini run busybox true (ms; floor: native)" "$k" "$f" "$(calc "$k / $f" 1)x" "-"
f=$(calc "$(fact startup.kvmini_ms)")
row "3b kvmini run busybox true (ms; floor: hello)" "$k" "$f" "$(calc "$k / $f" 2)" "-"

# 4. File throughput, 256 MiB in 1 MiB calls (MiB/s): read (the second of
# two passes), write; then the whole read run, both passes, first touch
# of the buffer included.
for g in read write; do
    k=$(calc "256 / ($(median file_$g/kvmini) / 1e9)" 0)
    f=$(calc "256 / ($(median file_$g/native) / 1e9)" 0)
    row "4 file $g, 1 MiB calls (MiB/s; floor: native)" "$k" "$f" "$(calc "$k / $f")" ">=0.95"
done
k=$(calc "512 / ($(fact file_read.kvmini.whole_ms) / 1e3)" 0)
f=$(calc "512 / ($(fact file_read.native.whole_ms) / 1e3)" 0)
row "4 file read, whole run, 2 passes (MiB/s)" "$k" "$f" "$(calc "$k / $f")" "-"

# 5. display throughput, 64 KiB strings, stdout a file (MiB/s).
mib=$(calc "65535 * 1024 / 1048576" 6)
k=$(calc "$mib / ($(median display/kvmini) / 1e9)" 0)
f=$(calc "$mib / ($(median display/native) / 1e9)" 0)
row "5 display 64 KiB to a file (MiB/s; floor: write)" "$k" "$f" "$(calc "$k / $f")" "-"

# 6. Batching 1,000 16-byte writes: batched (64 per exit) vs one exit each.
kb=$(fact batch.batched.exits_per_op)
ku=$(fact batch.unbatched.exits_per_op)
row "6 exits per write (floor: unbatched)" "$kb" "$ku" "$(calc "$ku / $kb" 1)x" ">=20" "$(calc "$ku / $kb" 1)"
kb=$(calc "$(median batch/batched) / 1e6" 2)
ku=$(calc "$(median batch/unbatched) / 1e6" 2)
row "6 1000 writes, wall (ms; floor: unbatched)" "$kb" "$ku" "$(calc "$ku / $kb" 1)x" ">=10" "$(calc "$ku / $kb" 1)"

# 7. Memory: peak RSS beyond the guest memory touched (KiB).
k=$(fact memory.kvmini.own_kib)
f=$(fact memory.floor.own_kib)
row "7 peak RSS beyond guest memory (KiB)" "$k" "$f" "$(calc "$k / $f" 2)" "<=4096" "$k"

# 8. Scale: sandboxes on threads, all at once (per second).
calls=$(fact scale.total_calls)
lifecycles=$(fact scale.total_lifecycles)
for n in 1 2 4 8 16 64; do
    k=$(calc "$calls / ($(median scale_hypercalls/kvmini/$n) / 1e9)" 0)
    f=$(calc "$calls / ($(median scale_hypercalls/floor/$n) / 1e9)" 0)
    row "8 hypercalls/s, $n at once" "$k" "$f" "$(calc "$k / $f")" "-"
done
for n in 1 2 4 8 16 64; do
    k=$(calc "$lifecycles / ($(median scale_lifecycles/kvmini/$n) / 1e9)" 0)
    f=$(calc "$lifecycles / ($(median scale_lifecycles/floor/$n) / 1e9)" 0)
    row "8 lifecycles/s, $n at once" "$k" "$f" "$(calc "$k / $f")" "-"
done

# 9. Busybox on a 64 MiB file (ms; floor: native busybox), with kvmini's
# system calls per second and exits per MiB.
for a in sha256sum wc; do
    k=$(fact busybox.$a.kvmini_ms)
    f=$(fact busybox.$a.native_ms)
    row "9 busybox $a 64 MiB (ms; floor: native)" "$k" "$f" "$(fact busybox.$a.ratio)" "-"
    row "9   $a: system calls/s, exits/MiB" "$(fact busybox.$a.syscalls_per_s)" "$(fact busybox.$a.exits_per_mib)" "-" "-"
done

# 10. Memory permissions of ring-3 ELF guests: now against the commit
# before them (ratio now / before; flat guests have no permissions).
if [ "${PROTECTION:-1}" != 0 ]; then
    for f in elf_call_us flat_call_us elf_lifecycle_us flat_lifecycle_us; do
        row "10 $f, now vs before permissions" "$(fact protection.$f.now)" "$(fact protection.$f.before)" "$(fact protection.$f.ratio)" "<=1.02"
    done
fi

# Heap allocations per hypercall after warm-up (no floor: the target is 0).
for c in getNumExits write_stdout write_file; do
    a=$(fact alloc_per_call.$c)
    row "allocations per call, $c" "$a" "-" "-" "<=0" "$a"
done

{
    echo
    host
    echo "load average before: $load_before; after the benchmarks: $load_after; at the end: $load_end; $(($(date +%s) - started)) s in all"
    echo "criterion: warm-up ${WARM_UP} s, measurement ${MEASURE} s, ${SAMPLES} samples; medians; nice ${NICE}"
} >>"$TABLE"
cat "$TABLE"
