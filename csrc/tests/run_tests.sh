#!/usr/bin/env bash
# Builds csrc/tests/test_core.c against csrc/fastsem_core.c, and
# csrc/tests/test_proc.c against csrc/fastsem_proc.c, and runs them:
#
#   plain     gcc -O2 -Wall -Wextra -Werror
#   tsan      -fsanitize=thread -O1 -g                (iterations scaled down)
#   asan      -fsanitize=address,undefined -O1 -g     (+ LeakSanitizer if it works here)
#   portable  tsan, with the waiter's event made of a mutex and a condition
#             variable (-DFS_PORTABLE_EVENT): the macOS code path, on Linux
#   helgrind  valgrind --tool=helgrind on the -O1 -g build (if valgrind is
#             installed; iterations scaled far down). Only when asked for by
#             name: it does not model C11 atomics, which the core's lock-free
#             paths use, so it reports false races; TSan is the race checker.
#
# Usage:  csrc/tests/run_tests.sh [plain|tsan|asan|portable|helgrind|all]
#         (default: all = plain, tsan, asan, portable)
#
# Environment:
#   CC                     compiler (default gcc; only gcc 12 has been tried)
#   FASTSEM_CORE_SRC       core source to test (default csrc/fastsem_core.c);
#                          for trying deliberately broken copies of the core
#   FASTSEM_TEST_SCALE     iteration multiplier for plain and asan (default 1)
#   FASTSEM_TSAN_SCALE     ... for tsan (default 0.5)
#   FASTSEM_HELGRIND_SCALE ... for helgrind (default 0.05)
#   FASTSEM_TEST_ONLY      run only the test of that name (see test_core.c)
#   FASTSEM_TEST_SKIP_FORK 1: skip the fork test; busy: skip only the part that
#                          forks while another thread is inside (helgrind's
#                          default, see run_helgrind)
#   FASTSEM_TEST_TIMEOUT   per-test watchdog in seconds (default 60; 120 under
#                          helgrind)
#
# ThreadSanitizer on some kernels (high mmap ASLR entropy, vm.mmap_rnd_bits >
# 28) dies at start with "FATAL: ThreadSanitizer: unexpected memory mapping".
# When that message appears, the tsan run is retried once under
# `setarch $(uname -m) -R` (ASLR off for that process only), which avoids it.
# (Not needed where this was written: vm.mmap_rnd_bits=28, gcc 12.2.)
#
# Build products and logs go to csrc/tests/build/ (gitignored).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CSRC=$(dirname "$HERE")
BUILD="$HERE/build"
CC=${CC:-gcc}
CORE_SRC=${FASTSEM_CORE_SRC:-$CSRC/fastsem_core.c}
TEST_SRC="$HERE/test_core.c"
# FS_TEST_HOOKS compiles the core's test-only hooks in (see fastsem_core.c).
WARN=(-Wall -Wextra -Werror -std=c11 -pthread -DFS_TEST_HOOKS)

which_variant=${1:-all}
case "$which_variant" in
    plain | tsan | asan | portable | helgrind | all) ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d'
        exit 0
        ;;
    *)
        echo "usage: $0 [plain|tsan|asan|portable|helgrind|all]" >&2
        exit 2
        ;;
esac

mkdir -p "$BUILD"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

declare -a SUMMARY=()
failed=0

# build NAME FLAGS... : compiles the test and the core into $BUILD/test_core_NAME
build() {
    local name=$1
    shift
    echo "== build $name: $CC $* ${WARN[*]}"
    "$CC" "$@" "${WARN[@]}" -I"$CSRC" "$TEST_SRC" "$CORE_SRC" -o "$BUILD/test_core_$name" || return
    # The process-shared core's tests (test_proc.c), with its test hooks.
    "$CC" "$@" "${WARN[@]}" -DFSP_TEST_HOOKS -I"$CSRC" "$HERE/test_proc.c" \
        "$CSRC/fastsem_proc.c" "$CORE_SRC" -o "$BUILD/test_proc_$name"
}

# run NAME LOG CMD... : runs, tees to LOG, fails on a non-zero exit or on any
# sanitizer report that did not change the exit status
run_logged() {
    local log=$1
    shift
    local rc=0
    "$@" 2>&1 | tee "$log" || rc=$?
    if [ "$rc" -eq 0 ] && grep -qE 'WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' "$log"; then
        echo "!! sanitizer report in $log" >&2
        rc=99
    fi
    return "$rc"
}

# variant NAME BUILD-FN RUN-FN : times the two steps, records the result
variant() {
    local name=$1 build_fn=$2 run_fn=$3
    local t0 t1 t2 status=ok
    echo
    t0=$(now)
    if ! "$build_fn"; then
        status="BUILD FAILED"
    fi
    t1=$(now)
    if [ "$status" = ok ] && ! "$run_fn"; then
        status="FAILED (log: ${BUILD#"$PWD"/}/$name.log)"
    fi
    t2=$(now)
    [ "$status" = ok ] || failed=1
    SUMMARY+=("$(printf '%-9s build %5ss  run %5ss  %s' "$name" "$(elapsed "$t0" "$t1")" "$(elapsed "$t1" "$t2")" "$status")")
}

# --- plain ------------------------------------------------------------------
build_plain() { build plain -O2; }
run_plain() {
    echo "== run plain"
    run_logged "$BUILD/plain.log" "$BUILD/test_core_plain" "${FASTSEM_TEST_SCALE:-1}" &&
        run_logged "$BUILD/plain-proc.log" "$BUILD/test_proc_plain" "${FASTSEM_TEST_SCALE:-1}"
}

# --- tsan -------------------------------------------------------------------
build_tsan() { build tsan -fsanitize=thread -O1 -g; }
run_tsan() { run_tsan_build tsan; }

build_portable() { build portable -fsanitize=thread -O1 -g -DFS_PORTABLE_EVENT; }
run_portable() { run_tsan_build portable; }

run_tsan_build() {
    run_tsan_binary "$1" "$BUILD/test_core_$1" "$BUILD/$1.log" &&
        run_tsan_binary "$1" "$BUILD/test_proc_$1" "$BUILD/$1-proc.log"
}

run_tsan_binary() {
    local name=$1 bin=$2 log=$3
    echo "== run $name: $(basename "$bin")"
    local scale=${FASTSEM_TSAN_SCALE:-0.5}
    export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
    if run_logged "$log" "$bin" "$scale"; then
        return 0
    fi
    if grep -q 'unexpected memory mapping' "$log"; then
        echo "== tsan: retrying with ASLR off (setarch $(uname -m) -R)"
        run_logged "$log" setarch "$(uname -m)" -R "$bin" "$scale"
        return
    fi
    return 1
}

# --- asan + ubsan -----------------------------------------------------------
LSAN=0
build_asan() {
    build asan -fsanitize=address,undefined -fno-sanitize-recover=undefined \
        -fno-omit-frame-pointer -O1 -g || return
    # Does LeakSanitizer work here (it needs ptrace-like access to threads,
    # which some containers forbid)? Probe with a deliberate leak.
    printf '#include <stdlib.h>\nvoid *volatile p;\nint main(void){p=malloc(33);p=0;return 0;}\n' \
        >"$BUILD/lsan_probe.c"
    local out=""
    if "$CC" -fsanitize=address -g "$BUILD/lsan_probe.c" -o "$BUILD/lsan_probe" 2>/dev/null; then
        out=$(ASAN_OPTIONS=detect_leaks=1 "$BUILD/lsan_probe" 2>&1 || true)
    fi
    if grep -q 'detected memory leaks' <<<"$out"; then
        LSAN=1
    else
        LSAN=0
        echo "== asan: LeakSanitizer does not work here; running with detect_leaks=0"
    fi
}
run_asan() {
    echo "== run asan+ubsan (detect_leaks=$LSAN)"
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
        ASAN_OPTIONS="detect_leaks=$LSAN:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
        run_logged "$BUILD/asan.log" "$BUILD/test_core_asan" "${FASTSEM_TEST_SCALE:-1}" &&
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
        ASAN_OPTIONS="detect_leaks=$LSAN:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
            run_logged "$BUILD/asan-proc.log" "$BUILD/test_proc_asan" "${FASTSEM_TEST_SCALE:-1}"
}

# --- helgrind ---------------------------------------------------------------
build_helgrind() {
    build helgrind -O1 -g || return
    # glibc >= 2.25: a pthread_cond_timedwait that times out may wake another
    # waiter from inside __condvar_cancel_waiting before it has re-taken the
    # mutex; Helgrind flags that internal call as "pthread_cond_{signal,
    # broadcast}: associated lock is not held". Not ours: suppress exactly that.
    cat >"$BUILD/helgrind.supp" <<'EOF'
{
   glibc-condvar-cancel-waiting-signal-without-mutex
   Helgrind:Misc
   obj:*/vgpreload_helgrind-*.so
   fun:__pthread_cond_wait_common
   fun:pthread_cond_timedwait*
}
EOF
}
run_helgrind() {
    echo "== run helgrind"
    # Helgrind does not model fork() of a multi-threaded process: in the child
    # it still sees the parent's other threads, and reports the child's fix-up
    # of a mutex another parent thread was using as a race. So that one part
    # of the fork test is skipped here (plain, tsan and asan run it).
    FASTSEM_TEST_SKIP_FORK=${FASTSEM_TEST_SKIP_FORK:-busy} \
        FASTSEM_TEST_TIMEOUT=${FASTSEM_TEST_TIMEOUT:-120} run_logged "$BUILD/helgrind.log" \
        valgrind --tool=helgrind -q --error-exitcode=9 \
        --suppressions="$BUILD/helgrind.supp" \
        "$BUILD/test_core_helgrind" "${FASTSEM_HELGRIND_SCALE:-0.05}"
}

# ----------------------------------------------------------------------------
echo "core: $CORE_SRC"
"$CC" --version | head -n 1
T0=$(now)
for v in plain tsan asan portable helgrind; do
    if [ "$which_variant" != all ] && [ "$which_variant" != "$v" ]; then
        continue
    fi
    # helgrind models pthreads but not C11 atomics, and the core's uncontended
    # paths are lock-free atomics: it reports races that are not there (TSan,
    # which models atomics, is the race checker). Run it only when asked.
    if [ "$v" = helgrind ] && [ "$which_variant" = all ]; then
        SUMMARY+=("$(printf '%-9s not in "all": it cannot see C11 atomics (ask: helgrind)' helgrind)")
        continue
    fi
    if [ "$v" = helgrind ] && ! command -v valgrind >/dev/null 2>&1; then
        if [ "$which_variant" = helgrind ]; then
            echo "valgrind is not installed" >&2
            exit 2
        fi
        SUMMARY+=("$(printf '%-9s skipped (no valgrind)' helgrind)")
        continue
    fi
    variant "$v" "build_$v" "run_$v"
done

echo
echo "== summary (total $(elapsed "$T0" "$(now)")s)"
printf '  %s\n' "${SUMMARY[@]}"
if [ "$failed" -ne 0 ]; then
    echo "FAILED"
    exit 1
fi
echo "all passed"
