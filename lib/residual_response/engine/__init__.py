"""The response engine: how every later token, at every later layer, moves under a weak
single-token perturbation (``chi`` over eps, read layer, source and target).

One forward pass perturbs many sources at once: each batch row carries one (source, direction,
eps) combination. The work that cannot change is skipped: blocks before ``l0`` never run (the
clean ``h[l0]`` is written into block ``l0``); positions before a row's source never run (by
causality they equal the clean pass, whose keys and values stand in); the LM head never runs and
blocks after the last read layer are cut off; each read stream is reduced to per-token norms as
soon as its block produces it; a second sequence equal to the first before some position, perturbed
at the same sources before it, computes only the positions after it (:mod:`.shared_prefix`).

Modules, in the order the algorithm uses them:

- :mod:`.compute`  :func:`response`, the algorithm: validate once (:class:`ResponseJob`), then clean pass,
  plan, passes, result (:func:`run_response`)
- :mod:`.clean`    the clean pass (:class:`CleanPass`) and its cache (:class:`CleanPassCache`,
  :func:`reuse_clean_passes`)
- :mod:`.plan`     which rows share a forward pass (:func:`plan_batches`, :func:`default_batch_rows`,
  :func:`planned_passes`, :func:`source_batches`) and the cost model behind it
- :mod:`.passes`   one perturbed forward pass, padded (:class:`PaddedPass`) or packed (:class:`PackedPass`)
- :mod:`.shared_prefix` a sequence and a twin that shares its prefix, perturbed at the same sources in
  that prefix: the twin's rows compute only the positions after it (:func:`.shared_prefix.run_response_pair`)
- :mod:`.variants` one sequence under several variants of the model that differ only from some block on
  (ablated heads): the blocks before each variant's start run once (:func:`run_response_variants`)
- :mod:`.tap`      the attention tap the packed pass and the clean pass rely on (transformers internals)
- :mod:`.result`   :class:`ResponseResult` and its ``.npz`` file
"""

from .clean import CleanPass, CleanPassCache, reuse_clean_passes
from .compute import ResponseJob, response, run_response
from .passes import METHODS, PackedPass, PaddedPass, Pass
from .plan import (FORWARD_OVERHEAD_POSITIONS, attention_weight, default_batch_rows, forward_overhead, plan_batches,
                   planned_passes, source_batches)
from .result import ResponseResult

__all__ = [
    "response",
    "run_response",
    "ResponseJob",
    "ResponseResult",
    "METHODS",
    "plan_batches",
    "planned_passes",
    "default_batch_rows",
    "source_batches",
    "FORWARD_OVERHEAD_POSITIONS",
    "forward_overhead",
    "attention_weight",
    "CleanPass",
    "CleanPassCache",
    "reuse_clean_passes",
    "Pass",
    "PaddedPass",
    "PackedPass",
]
