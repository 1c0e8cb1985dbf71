#!/usr/bin/env bash
# `make test`'s part of tests/gpu (no GPU needed):
#   1. build/test_gpu's self-test: every check of its table, at the ci sizes, with
#      the CPU's bf16 emulation standing in for CUDA (tests the harness itself);
#   2. its fault handling: a check that dies as a CUDA error does (exit 1) and one
#      that hangs past --check-timeout are each failed by name, and the checks
#      after them still run (in a new process);
#   3. tests/gpu/carry_size.sh (what a lent GPU machine's run carries < 64 MiB).
#   tests/gpu/selftest.sh BUILD_DIR CUDA(0/1)
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build} cuda=${2:-1}
fail=0
if [[ $cuda == 1 ]]; then
    log=$build/test_gpu-selftest.log
    SPREC_TEST_GPU_SELFTEST=1 "$build/test_gpu" > "$log" 2>&1
    rc=$?
    echo "self-test ($log): $(grep -m1 -o '[0-9]* checks, [0-9]* failed' "$log")"
    ((rc == 0)) || { grep FAIL "$log" | head -20; fail=1; }

    # an injected fault in rope_d64, between two checks that must still run
    for mode in exit hang; do
        flog=$build/test_gpu-selftest-$mode.log
        SPREC_TEST_GPU_SELFTEST=1 SPREC_TEST_GPU_INJECT=rope_d64:$mode "$build/test_gpu" --check-timeout 3 \
            --only 'rmsnorm_n37_c77,rope_d64,rope_d80' > "$flog" 2>&1
        rc=$?
        want=$([[ $mode == exit ]] && echo 'rope_d64: ended the process (exit 1' || echo 'rope_d64: timed out after 3 s')
        if ((rc == 1)) && grep -q "^$want" "$flog" && grep -q '^rmsnorm_fwd out N37 C77 \[cpu\] .*PASS' "$flog" &&
           grep -q '^rope_fwd B2 T67 H2 D80 \[cpu-bf16\] .*PASS' "$flog" && grep -q ', 1 failed$' "$flog"; then
            echo "self-test: an injected '$mode' fault fails only its check ($flog)"
        else
            echo "self-test: FAIL: the injected '$mode' fault in rope_d64 was not handled as expected (exit $rc; $flog)"
            fail=1
        fi
    done
fi
tests/gpu/carry_size.sh || fail=1
exit $fail
