#!/usr/bin/env python
"""Check toy-model caches against the committed weights hash: ``check_toy_portable.py CACHE [CACHE ...]``.

Why: the toy GPT-2 is trained without any CPU-dependent kernel (``residual_response.models.toy``), so
every cache of it, trained natively or at the lowest SIMD level, on any x86-64 CPU, must hold
the weights whose SHA-256 is ``models.toy.EXPECTED_WEIGHTS_SHA256``. ``make test`` passes the main cache
and one trained afresh at the lowest SIMD level. Each training log records the hash of its final
weights; this re-hashes the weights on disk too, so a log that disagrees with its own files fails.
Exits 1 with one line on the first mismatch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: check_toy_portable.py CACHE [CACHE ...]", file=sys.stderr)
        return 2
    from transformers import GPT2LMHeadModel

    from residual_response.models import quiet_hf_progress
    from residual_response.models.toy import EXPECTED_WEIGHTS_SHA256, TOY_NAME, expected_hash_problem, weights_sha256

    for cache in argv:
        folder = Path(cache) / "models" / TOY_NAME
        try:
            log = json.loads((folder / "training_log.json").read_text())
            logged = log["weights_sha256"]
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: no toy training log with a weights hash in {folder}: {exc}", file=sys.stderr)
            return 1
        with quiet_hf_progress():
            on_disk = weights_sha256(GPT2LMHeadModel.from_pretrained(folder / "final"))
        if on_disk != logged:
            print(f"error: {folder}: weights on disk hash to {on_disk[:16]}, the log says {logged[:16]}", file=sys.stderr)
            return 1
        problem = expected_hash_problem(log)
        if problem:
            print(f"error: {folder}: {problem}", file=sys.stderr)
            return 1
    print(f"toy weights in {len(argv)} cache(s) equal the committed sha256 {EXPECTED_WEIGHTS_SHA256}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
