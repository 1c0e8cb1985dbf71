# Sourced by the pipeline scripts (demo_sprec.sh, real_pipeline.sh): runs one named stage of a pipeline,
# appends its output to $out/NAME.log and times it. A stage that succeeds leaves $out/NAME.time (its
# wall time in seconds); with RESUME=1 a stage that already has one is skipped, so an interrupted pipeline
# continues at the first unfinished stage (a stage interrupted midway starts again from its beginning).
# The caller sets `out` (the run folder) and `pipeline` (its name, for messages).
declare -a stage_names=()
stage() {   # stage NAME CMD...
    local name=$1; shift
    stage_names+=("$name")
    if [ "${RESUME:-0}" = 1 ] && [ -f "$out/$name.time" ]; then
        echo "== $name: done before ($(cat "$out/$name.time") s), skipped (RESUME=1)"
        return
    fi
    echo "== $name: $*"
    local t0; t0=$(date +%s.%N)
    set +e
    "$@" 2>&1 | tee -a "$out/$name.log"
    local st=${PIPESTATUS[0]}
    set -e
    [ "$st" -eq 0 ] || { echo "$pipeline: stage $name failed (exit $st; log: $out/$name.log)" >&2; exit 1; }
    local dt; dt=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")
    echo "$dt" > "$out/$name.time"
    echo "== $name: ${dt} s"
    echo
}
print_times() {   # the stage times and their sum as a two-column table, also into $out/times.txt
    local s
    for s in "${stage_names[@]}"; do printf '  %-10s %8s\n' "$s" "$(cat "$out/$s.time")"; done > "$out/times.txt"
    awk '{ s += $2 } END { printf "  %-10s %8.1f\n", "total", s }' "$out/times.txt" >> "$out/times.txt"
    cat "$out/times.txt"
}
