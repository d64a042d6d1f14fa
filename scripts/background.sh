#!/usr/bin/env bash
# Run one command of `make test` beside the others, and collect it later.
#
# Why: on 2 cores some stages of `make test` leave a core idle (the ci build waits on the toy's
# training at its start, and the toy trained at the lowest SIMD level is single-threaded). A
# single-threaded job started beside them costs little wall time.
#   usage: scripts/background.sh start NAME CMD [ARG ...]   # run CMD in the background; its output goes to _build/NAME.log
#          scripts/background.sh wait NAME                  # wait for it; print its log and exit with its status if it failed
# The job stays in the caller's process group, so Ctrl-C stops it with `make`.
set -euo pipefail
cmd=${1:-}; name=${2:-}
if [[ -z $name || ( $cmd != start && $cmd != wait ) || ( $cmd == start && $# -lt 3 ) ]]; then
    echo "usage: scripts/background.sh start NAME CMD [ARG ...] | wait NAME" >&2
    exit 2
fi
dir=_build/background
log=$dir/$name.log; rc=$dir/$name.rc
if [[ $cmd == start ]]; then
    shift 2
    mkdir -p "$dir"
    rm -f "$log" "$rc"
    ( set +e; "$@"; echo $? > "$rc" ) < /dev/null > "$log" 2>&1 &
    echo $! > "$dir/$name.pid"
    echo "[background] $name started (log: $log)"
    exit 0
fi
if [[ ! -f $log ]]; then
    echo "error: no background job '$name' was started (no $log)" >&2
    exit 2
fi
pid=$(cat "$dir/$name.pid")
while [[ ! -f $rc ]]; do
    if ! kill -0 "$pid" 2>/dev/null && [[ ! -f $rc ]]; then
        cat "$log" >&2
        echo "error: background job '$name' ended without an exit status (killed?); its log is above" >&2
        exit 1
    fi
    sleep 1
done
status=$(cat "$rc")
if [[ $status != 0 ]]; then
    cat "$log" >&2
    echo "error: background job '$name' failed with exit status $status (log above, in $log)" >&2
    exit "$status"
fi
echo "[background] $name done: $(tail -n 1 "$log")"
