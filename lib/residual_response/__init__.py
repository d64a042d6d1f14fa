"""residual_response: weak single-token perturbations of a language model's residual stream.

Modules, one concept each:

- :mod:`.models`       load models by name (registry, offline stand-ins, random controls)
- :mod:`.streams`      read and write the residual stream with hooks on the blocks
- :mod:`.perturbation` perturbation directions and the perturbed stream
- :mod:`.engine`       the batched response engine: chi over (eps, read layer, source, target)
- :mod:`.regime`       the universal (scale-invariant) regime of an eps sweep
- :mod:`.regime_tables` the regime as the pages show it: curve and window tables, a multi-model sweep
- :mod:`.sequences`    repeated random tokens and their controls
- :mod:`.induction`    induction and duplicate-token scores, bootstrap CIs, the emergence layer, the section map
- :mod:`.canonical`    the canonical setting of the book's headline numbers
- :mod:`.null`         the null of the score on random-initialised models
- :mod:`.attention`    attention-pattern induction and previous-token scores
- :mod:`.heads`        head attribution from the response at the stripe targets
- :mod:`.ablation`     mean- and zero-ablation of chosen heads
- :mod:`.behaviour`    loss on the first and the second copy of a repeat
- :mod:`.crosscheck`   rank agreement, ablation studies, null controls
- :mod:`.toy`          the toy GPT-2: CPU-independent training, checkpoints, the phase change
- :mod:`.precision`    float64 models kept in float64
- :mod:`.tables`       tidy tables for the pages
- :mod:`.schematic`    the method's schematic figure
- :mod:`.bench`        the benchmark and the cost model
- :mod:`.plots`        offline interactive charts for the book
- :mod:`.page`         what every book page imports, in one line
- :mod:`.provenance`   what made a result file (versions, weights hash, parameters, times)
- :mod:`.progress`     one progress bar per job, its total from the batch plan
- :mod:`.resultfile`   the kind of a result file, read back with one clear error
- :mod:`.show`         result files drawn as an offline HTML page or a PNG
- :mod:`.cli`          the ``residual-response`` command
"""

from .models import LoadedModel, ModelUnavailableError, load_model, model_names
from .engine import ResponseResult, response

__all__ = ["LoadedModel", "ModelUnavailableError", "load_model", "model_names", "ResponseResult", "response"]
__version__ = "0.1.0"
