#!/usr/bin/env bash
# Measure the main jobs from a fresh clone, as a newcomer meets them (issue 21's bars):
#   1. fresh `make book` (install, de-quantisation, toy training, every page executed, HTML)
#   2. second `make book`, nothing changed (every page reused from the page cache)
#   3. `make book` after a change to the prose of book/*.md (the HTML only)
#   4. one page again with another parameter (`--only ... --param ...`: the other pages reused)
#   5. fresh `make test` in a second fresh clone
# Each step prints its wall time, the CPU time of its processes and the load average before and
# after it; a summary goes to the file given with --out (default measure-build.txt here).
# Timings are only comparable on a quiet machine: check the load averages it prints.
#
#   usage: scripts/measure_build.sh [--steps 1,2,3,4,5] [--out FILE] [--keep] [--workdir DIR]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STEPS="1,2,3,4,5"
OUT="$PWD/measure-build.txt"
KEEP=0
WORK=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --out) OUT="$(realpath -m "$2")"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --workdir) WORK="$2"; shift 2 ;;
    *) echo "usage: $0 [--steps 1,2,3,4,5] [--out FILE] [--keep] [--workdir DIR]" >&2; exit 2 ;;
  esac
done
WORK="${WORK:-$(mktemp -d /tmp/measure-build.XXXXXX)}"
mkdir -p "$WORK"
COMMIT="$(git -C "$REPO" rev-parse HEAD)"
has() { [[ ",$STEPS," == *",$1,"* ]]; }

{
  echo "# measure_build.sh: commit $COMMIT, $(date -u +%FT%TZ)"
  echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
} | tee "$OUT"

clone() {  # a fresh clone of this checkout's HEAD, with no venv, no caches, no build
  rm -rf "$1"
  git clone -q --no-hardlinks "$REPO" "$1"
  git -C "$1" checkout -q "$COMMIT"
}

step() {  # step NAME DIR COMMAND...: run COMMAND in DIR, timed; one summary line
  local name="$1" dir="$2"; shift 2
  local load0 t0 t1 log="$WORK/$name.log"
  load0="$(cut -d' ' -f1-3 /proc/loadavg)"
  t0=$(date +%s.%N)
  # the clone's own caches: nothing from the caller's environment
  if ( cd "$dir" && env -u RESIDUAL_RESPONSE_CACHE -u RESIDUAL_RESPONSE_RESULTS_CACHE -u RESIDUAL_RESPONSE_RECOMPUTE \
       /usr/bin/time -f "%U %S" -o "$WORK/$name.cpu" "$@" ) >"$log" 2>&1; then status=ok; else status="FAILED (see $log)"; fi
  t1=$(date +%s.%N)
  local cpu; cpu="$(awk '{printf "%.0f", $1 + $2}' "$WORK/$name.cpu" 2>/dev/null || echo '?')"
  printf '%-28s %7.0f s wall  %6s s CPU  load %s -> %s  %s\n' "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" "$cpu" \
    "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)" "$status" | tee -a "$OUT"
  grep -h -E '^\[cache\] reused|^  \(total\)' "$log" | sed 's/^/    /' | tee -a "$OUT" || true
}

BOOK="$WORK/book"
if has 1 || has 2 || has 3 || has 4; then
  has 1 && clone "$BOOK"
  [[ -d "$BOOK" ]] || clone "$BOOK"
  has 1 && step "1-fresh-make-book" "$BOOK" make book
  has 2 && step "2-second-make-book" "$BOOK" make book
  if has 3; then
    echo "A sentence added by measure_build.sh." >> "$BOOK/book/intro.md"
    step "3-prose-change-make-book" "$BOOK" make book
    git -C "$BOOK" checkout -q book/intro.md
  fi
  has 4 && step "4-one-page-new-param" "$BOOK" .venv/bin/python scripts/build_book.py --profile publish \
    --out _build/book --only response-matrices --param T=12
fi
if has 5; then
  TEST="$WORK/test"
  clone "$TEST"
  step "5-fresh-make-test" "$TEST" make test
fi
echo "logs: $WORK" | tee -a "$OUT"
[[ $KEEP == 1 ]] || { [[ -n "$WORK" && "$WORK" == /tmp/measure-build.* ]] && rm -rf "$WORK/book/.venv" "$WORK/test/.venv" || true; }
