# Sourced by the pipeline scripts (demo_sprec.sh, real_pipeline.sh): runs one named stage of a pipeline,
# appends its output to $out/NAME.log, times it and remembers the time in the array `times`.
# The caller sets `out` (the run folder) and `pipeline` (its name, for messages).
declare -a times=()
stage() {   # stage NAME CMD...
    local name=$1; shift
    echo "== $name: $*"
    local t0; t0=$(date +%s.%N)
    set +e
    "$@" 2>&1 | tee -a "$out/$name.log"
    local st=${PIPESTATUS[0]}
    set -e
    [ "$st" -eq 0 ] || { echo "$pipeline: stage $name failed (exit $st; log: $out/$name.log)" >&2; exit 1; }
    local dt; dt=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
    times+=("$name $dt")
    echo "== $name: ${dt} s"
    echo
}
print_times() {   # the stage times as a two-column table, also into $out/times.txt
    for t in "${times[@]}"; do printf '  %-10s %8s\n' ${t}; done | tee "$out/times.txt"
}
