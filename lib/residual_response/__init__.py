"""residual_response: weak single-token perturbations of a language model's residual stream.

Modules, one concept each, from the model to the page. Vocabulary (:mod:`.streams`): a *layer* or
*stream* ``l`` in ``0..L`` is the residual stream entering block ``l`` (``L``: after the last block,
before the final norm); a *block* ``b`` in ``0..L-1`` is a transformer block, and block ``b``
writes stream ``b + 1``.

Layers, from the model up: the science modules and the engine import nothing above them; only
the page layer (:mod:`.pages`), the benchmark (:mod:`.bench`) and the command line (:mod:`.cli`)
import :mod:`.pages`.

Models and streams
  - :mod:`.models`        load models by name: ``loaded`` (:class:`LoadedModel`), ``spec``, ``registry``,
    ``cache``, ``gguf`` (offline stand-ins), ``hf`` (hub ids, folders), ``random_init``, ``toy`` (the toy GPT-2)
  - :mod:`.precision`     float64 models kept in float64
  - :mod:`.streams`       read and write the residual stream with hooks; stream names as TransformerLens writes them
  - :mod:`.sequences`     repeated random tokens and their controls
  - :mod:`.perturbation`  perturbation directions and the perturbed stream

The response
  - :mod:`.engine`        the batched response engine: chi over (eps, read stream, source, target)
    (``result``, ``plan``, ``clean``, ``tap``, ``passes``, ``compute``)
  - :mod:`.regime`        the universal (scale-invariant) regime of an eps sweep

Science on the response and beside it
  - :mod:`.stats`         the bootstraps: means, ratios, two-level (seeds, then positions), paired
  - :mod:`.induction`     induction and duplicate-token scores, the rise over depth, the emergence layer, the section map
  - :mod:`.canonical`     the canonical setting of the book's headline numbers
  - :mod:`.headline`      the headline numbers per model, computed once and cached
  - :mod:`.null`          the null of the score on random-initialised models
  - :mod:`.attention`     attention-pattern induction and previous-token scores
  - :mod:`.heads`         head attribution from the response at the stripe targets
  - :mod:`.ablation`      mean- and zero-ablation of chosen heads
  - :mod:`.behaviour`     loss on the first and the second copy of a repeat
  - :mod:`.crosscheck`    rank agreement, ablation studies, score controls
  - :mod:`.dynamics`      measurements across training: the phase change, the loss drop, scores at checkpoints

The book's pages (:mod:`.pages`)
  - ``pages.page``        what every book page imports, in one line (:mod:`.page` re-exports it)
  - ``pages.setup``       offline charts, and no progress bars in a page's cells
  - ``pages.studies``     the studies a page runs, one call per model (cross-checks, negative controls, the phase change)
  - ``pages.regime_tables`` the regime as the pages show it: curve and window tables, a multi-model sweep
  - ``pages.tables``      tables (``frames``) and sentences (``text``) for the pages
  - ``pages.plots``       offline interactive charts (``render``, ``charts``, ``matrices``, ``training``, ``figures``,
    ``convert``: vl-convert's static renderings, in a child process under an address-space limit)
  - ``pages.schematic``   the method's schematic figure

Benchmark, files and command line
  - :mod:`.bench`         the benchmark: cost model, clock, scenarios, typed record (``make bench``)
  - :mod:`.provenance`    what made a result file (versions, weights hash, parameters, times)
  - :mod:`.resultfile`    the kind of a result file, read back with one clear error
  - :mod:`.progress`      one progress bar per job, its total from the batch plan
  - :mod:`.checks`        the validators of every public argument, and of results before they leave
  - :mod:`.io`            atomic writes, cache locks (a wait said once, bounded), temporaries of killed writers
  - :mod:`.outputs`       an output path that is no regular file, handled as ``cp`` and ``dd`` handle it
  - :mod:`.signals`       SIGTERM and SIGHUP handled like SIGINT: cleanup, one line, exit 128 + signal
  - :mod:`.memory`        the memory a run may still take (MemAvailable, rlimits, cgroups); allocation failures
  - :mod:`.cli`           the ``residual-response`` command (``parser``, ``output``, ``estimate``, ``commands``,
    ``show``: result files drawn as an offline HTML page or a PNG, ``show_checks``)

The book's build (``scripts/build_book.py``) is the package ``book_build`` beside this one in ``lib/``.
"""

from .models import LoadedModel, ModelUnavailableError, load_model, model_names
from .engine import ResponseResult, response

__all__ = ["LoadedModel", "ModelUnavailableError", "load_model", "model_names", "ResponseResult", "response"]
__version__ = "0.1.0"
