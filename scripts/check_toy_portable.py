#!/usr/bin/env python
"""Check that two toy-model caches hold the same weights: ``check_toy_portable.py CACHE_A CACHE_B``.

Why: the toy GPT-2 is trained with CPU-independent kernels (``residual_response.models.toy``), so a cache
trained at the lowest SIMD level must hold the same bits as one trained natively. Each training
log records the SHA-256 of its final weights; this compares them and re-hashes the weights on
disk, so a log that disagrees with its own files fails too. Exits 1 with one line on a mismatch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_toy_portable.py CACHE_A CACHE_B", file=sys.stderr)
        return 2
    from transformers import GPT2LMHeadModel

    from residual_response.models import quiet_hf_progress
    from residual_response.models.toy import TOY_NAME, weights_sha256

    hashes = []
    for cache in argv:
        folder = Path(cache) / "models" / TOY_NAME
        try:
            logged = json.loads((folder / "training_log.json").read_text())["weights_sha256"]
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: no toy training log with a weights hash in {folder}: {exc}", file=sys.stderr)
            return 1
        with quiet_hf_progress():
            on_disk = weights_sha256(GPT2LMHeadModel.from_pretrained(folder / "final"))
        if on_disk != logged:
            print(f"error: {folder}: weights on disk hash to {on_disk[:16]}, the log says {logged[:16]}", file=sys.stderr)
            return 1
        hashes.append(logged)
    if hashes[0] != hashes[1]:
        print(f"error: the toy weights differ between {argv[0]} ({hashes[0][:16]}) and {argv[1]} ({hashes[1][:16]})",
              file=sys.stderr)
        return 1
    print(f"toy weights identical in both caches: sha256 {hashes[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
