"""residual_response: weak single-token perturbations of a language model's residual stream.

Modules, one concept each, from the model to the page. Vocabulary (:mod:`.streams`): a *layer* or
*stream* ``l`` in ``0..L`` is the residual stream entering block ``l`` (``L``: after the last block,
before the final norm); a *block* ``b`` in ``0..L-1`` is a transformer block, and block ``b``
writes stream ``b + 1``.

Layers, from the model up: the science modules and the engine import nothing above them; only
the page layer (:mod:`.pages`), the benchmark (:mod:`.bench`) and the command line (:mod:`.cli`)
import :mod:`.pages`, and only they use pandas and altair; no import circle, lazy ones included
(``tests/unit/test_layering.py``). One vocabulary: ``l0`` the perturbed stream, ``read_streams``
the streams read, ``T`` a copy's length, ``seeds`` a list of seeds.

Models and streams
  - :mod:`.models`        load models by name: ``loaded`` (:class:`LoadedModel`), ``blocks`` (any decoder's blocks), ``spec``, ``registry``,
    ``cache``, ``gguf`` (offline stand-ins), ``hf`` (hub ids, folders), ``random_init``, ``toy`` (the toy GPT-2)
  - :mod:`.precision`     float64 models kept in float64
  - :mod:`.streams`       read and write the residual stream with hooks; stream names as TransformerLens writes them
  - :mod:`.sequences`     repeated random tokens, their twins and other sequence kinds
  - :mod:`.perturbation`  perturbation directions and the perturbed stream

The response
  - :mod:`.engine`        the batched response engine: chi over (eps, read stream, source, target)
    (``result``, ``plan``, ``clean``, ``tap``, ``passes``, ``compute``)
  - :mod:`.regime`        the universal (scale-invariant) regime of an eps sweep
  - :mod:`.cost`          the one cost model: weights of a block, FLOPs and memory of a response

Science on the response and beside it
  - :mod:`.stats`         the bootstraps: means, ratios, two-level (seeds, then positions), paired
  - :mod:`.induction`     induction and duplicate-token scores and the section map, validated once (``InductionSetting``)
  - :mod:`.induction_result` their results and files (``StripeData``, ``InductionResult``, ``SectionMap``)
  - :mod:`.rise`          the rise of a score over depth (``Rise``) and the emergence layer
  - :mod:`.canonical`     the canonical setting of the book's headline numbers
  - :mod:`.headline`      the headline numbers per model, computed once and cached
  - :mod:`.null`          the null of the score on random-initialised models
  - :mod:`.attention`     attention-pattern induction and previous-token scores
  - :mod:`.heads`         head attribution from the response at the stripe targets
  - :mod:`.ablation`      mean- and zero-ablation of chosen heads
  - :mod:`.behaviour`     loss on the first and the second copy of a repeat
  - :mod:`.crosscheck`    rank agreement, ablation studies ranked among random draws, no-repeat scores
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
  - :mod:`.threads`       CPU threads: how many, and idle OpenMP threads that sleep instead of spinning
  - :mod:`.results_cache` results computed once and kept: a verified, keyed store of expensive calls
  - :mod:`.checks`        the validators of every public argument (:class:`~.errors.InputError`), and of results before they leave
  - :mod:`.errors`        ``InputError``: a value the caller got wrong (the command line's exit status 2)
  - :mod:`.version`       the library's version
  - :mod:`.io`            atomic writes, cache locks (a wait said once, bounded), temporaries of killed writers
  - :mod:`.outputs`       an output path that is no regular file, handled as ``cp`` and ``dd`` handle it
  - :mod:`.signals`       SIGTERM and SIGHUP handled like SIGINT: cleanup, one line, exit 128 + signal
  - :mod:`.memory`        the memory a run may still take (MemAvailable, rlimits, cgroups); allocation failures
  - :mod:`.cli`           the ``residual-response`` command (``parser``, ``output``, ``estimate``, ``jobs``, ``commands``,
    ``show``: result files drawn as an offline HTML page or a PNG, ``show_checks``)

The book's build (``scripts/build_book.py``) is the package ``book_build`` beside this one in ``lib/``.
"""

from .threads import passive_waits as _passive_waits

_passive_waits()  # before torch is imported below: idle OpenMP threads sleep (see .threads)

from .models import LoadedModel, ModelUnavailableError, load_model, model_names  # noqa: E402
from .engine import ResponseResult, response  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["LoadedModel", "ModelUnavailableError", "load_model", "model_names", "ResponseResult", "response"]
