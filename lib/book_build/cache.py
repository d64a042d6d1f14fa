"""Executed pages cached by content: a page runs again only when something that can change its outputs did.

The store is jupyter-cache, the cache Jupyter Book itself uses (``jupyter_cache``, a dependency of
myst-nb, pinned in requirements.txt). It keeps executed notebooks under the md5 of their code
cells and of chosen notebook metadata, and merges a stored notebook's outputs into a notebook
whose markdown has changed since. What it cannot know by itself is everything outside the
notebook that a page's outputs depend on, so the build writes that into the notebook's metadata
entry :data:`KEY` before hashing (:func:`page_key`), and :class:`PageCache` hashes the code cells
with that entry only (not the kernelspec, nor any cell metadata: tags and captions change how a
page looks, not what it computes). So a page is executed again when one of these changes:

* its code cells, including papermill's injected cell with the page's parameters;
* the library's source (every file of the installed ``residual_response`` package);
* the versions of Python and of the packages that compute or render the outputs (:data:`PACKAGES`);
* the weights of the models it loads: the models named by its parameters (``model``, ``models``,
  ``*_model``, ``*_models``) and by ``models:`` in ``book/pages.yml``, each identified without
  loading it (:func:`model_fingerprint`: the sha256 record of its cache entry, the training log
  of the toy, the library source for the random-initialised ones);
* the files it reads: ``inputs:`` in ``book/pages.yml``, and any parameter naming a file;
* the environment variables that choose CPU kernels (``ATEN_``, ``MKL_``, ``DNNL_``, ``ONEDNN_``).

A change to the prose (``book/*.md``, or a notebook's markdown cells) rebuilds only the HTML.
The key is computed again after a page ran, and the page is stored under that key: a page whose
model was de-quantised or trained by the run itself is found by the next build. A page whose
model cannot be identified (a hub id not in the local cache) is always executed.

The store lives in ``$RESIDUAL_RESPONSE_CACHE/pages`` (``--recompute`` executes every page and
replaces its entry). The record of each entry holds how long the page took, so that the
instructor page's run times stay those of the computation.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_cache.cache.main import JupyterCacheBase

from .config import KERNEL, REPO, Page, Result

__all__ = ["KEY", "PACKAGES", "PageCache", "page_cache_dir", "page_key", "page_models", "model_fingerprint",
           "library_fingerprint", "versions", "run_page", "open_cache", "cached_others", "recorded_seconds", "report"]

#: the notebook metadata entry that carries what a page depends on besides its code
KEY = "residual_response_page_key"

#: packages whose versions can change a page's numbers or its rendered outputs
PACKAGES = ("torch", "transformers", "numpy", "scipy", "pandas", "altair", "vl-convert-python", "accelerate", "gguf",
            "safetensors", "tokenizers", "ipykernel", "papermill", "nbformat", "jupytext")

#: prefixes of environment variables that choose the CPU kernels (the lowest-SIMD run sets them)
KERNEL_ENV_PREFIXES = ("ATEN_", "MKL_", "DNNL_", "ONEDNN_")

#: layout of :func:`page_key`; a new layout never matches an old entry
KEY_FORMAT = 1

_MODEL_PARAMS = ("model", "models")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_fingerprint() -> str:
    """sha256 of every file of the installed ``residual_response`` package (the results cache's key too)."""
    from residual_response.results_cache import library_source

    return library_source()


def versions() -> dict[str, str | None]:
    """Python's version and those of :data:`PACKAGES` (``None``: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _folder_fingerprint(folder: Path) -> str:
    """The sha256 record of a cache entry (``MANIFEST.json``) when it has one; else every file's
    size and modification time, and the bytes of the small ones (a training log holds its weights' hash)."""
    manifest = folder / "MANIFEST.json"
    if manifest.is_file():
        try:
            files = json.loads(manifest.read_text())["files"]
            return "manifest:" + _sha256(json.dumps(files, sort_keys=True).encode())
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: fall back to the files themselves
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            st = path.stat()
            h.update(f"{path.relative_to(folder).as_posix()}\0{st.st_size}\0".encode())
            h.update(path.read_bytes() if st.st_size <= 1 << 20 else str(st.st_mtime_ns).encode())
    return "files:" + h.hexdigest()


def model_fingerprint(name: str) -> str | None:
    """What identifies the weights of model ``name`` without loading it; ``None`` when nothing does.

    Registry models with files in the model cache (the de-quantised stand-ins, the toy): their
    cache entry (:func:`_folder_fingerprint`); not built yet: ``"absent"`` (the page builds
    it, and is stored under the key computed after it ran). Random-initialised models: their
    seed and recipe are library source, already in the key. A local folder: its files. A hub id:
    the snapshot in the local Hugging Face cache, else ``None``.
    """
    from residual_response.models import cache_dir
    from residual_response.models.random_init import _load_random
    from residual_response.models.registry import REGISTRY

    spec = REGISTRY.get(name)
    if spec is not None and spec.loader is _load_random:
        return "random-init"
    folder = cache_dir() / "models" / name
    if spec is not None and folder.is_dir():
        return _folder_fingerprint(folder)
    hf_id = spec.hf_id if spec is not None else None
    if spec is None and Path(name).expanduser().is_dir():
        return _folder_fingerprint(Path(name).expanduser())
    if spec is not None and not hf_id:
        return "absent"
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(hf_id or name, "config.json")
    except Exception:  # not a hub id, or no hub client: cannot be identified
        return None
    return f"hub:{Path(found).parent.name}" if isinstance(found, str) else None


def _values(page: Page, declared: dict[str, str]) -> dict[str, Any]:
    """The page's parameter values: the notebook's defaults (where they are literals), then its parameters."""
    values: dict[str, Any] = {}
    for name, default in declared.items():
        try:
            values[name] = ast.literal_eval(default)
        except (ValueError, SyntaxError, TypeError):
            pass
    return {**values, **page.params}


def page_models(page: Page, declared: dict[str, str]) -> list[str]:
    """The models a page loads: its ``models:`` in pages.yml and the values of its model parameters."""
    names = list(page.models)
    for key, value in _values(page, declared).items():
        if key in _MODEL_PARAMS or key.endswith(tuple(f"_{p}" for p in _MODEL_PARAMS)):
            names.extend([value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)])
    return sorted({n for n in names if n})


def _input_files(page: Page, declared: dict[str, str]) -> list[Path]:
    files = [REPO / p for p in page.inputs]
    for value in _values(page, declared).values():
        if isinstance(value, str) and value and len(value) < 4096:
            path = Path(value).expanduser()
            path = path if path.is_absolute() else REPO / path
            if path.is_file():
                files.append(path)
    return sorted(set(files))


def page_key(page: Page, declared: dict[str, str], library: str | None = None) -> dict | None:
    """Everything besides its code cells that a page's outputs depend on (module docstring).

    ``None`` when a model the page loads cannot be identified: such a page is always executed.
    """
    models = {name: model_fingerprint(name) for name in page_models(page, declared)}
    if any(v is None for v in models.values()):
        return None
    inputs = {}
    for path in _input_files(page, declared):
        rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
        inputs[rel] = _sha256(path.read_bytes()) if path.is_file() else None
    env = {k: v for k, v in sorted(os.environ.items())
           if k.startswith(KERNEL_ENV_PREFIXES) and not k.endswith("_NUM_THREADS")}  # threads change no number
    return {"format": KEY_FORMAT, "kernel": KERNEL, "library": library or library_fingerprint(), "versions": versions(),
            "models": models, "inputs": inputs, "environment": env}


def page_cache_dir() -> Path:
    """``$RESIDUAL_RESPONSE_CACHE/pages`` (the library's cache folder)."""
    from residual_response.models import cache_dir

    return cache_dir() / "pages"


class PageCache(JupyterCacheBase):
    """jupyter-cache's store, hashing a notebook's code cells with its :data:`KEY` metadata only.

    Attributes:
        recompute: execute every page and replace its entry (``--recompute``).
    """

    def __init__(self, path: str | os.PathLike | None = None, recompute: bool = False):
        super().__init__(str(path or page_cache_dir()))
        self.recompute = recompute
        self.library = library_fingerprint()

    def create_hashed_notebook(self, nb, nb_metadata=None, cell_metadata=None):  # noqa: D102 (jupyter-cache's)
        return super().create_hashed_notebook(nb, nb_metadata=(KEY,), cell_metadata=())

    def prepared(self, page: Page, source_ipynb: Path, key: dict) -> Any:
        """The notebook papermill executes for ``page`` (parameters injected), with ``key`` in its metadata."""
        import papermill

        nb = papermill.execute_notebook(str(source_ipynb), None, parameters=page.params, kernel_name=KERNEL,
                                        prepare_only=True, progress_bar=False, log_output=False)
        nb.metadata[KEY] = key
        return nb

    def lookup(self, page: Page, source_ipynb: Path, declared: dict[str, str], stage: Path) -> Result | None:
        """Write the stored outputs of ``page`` into ``stage/<name>.ipynb`` when its entry is current, else ``None``."""
        key = page_key(page, declared, self.library)
        if key is None or self.recompute:
            return None
        nb = self.prepared(page, source_ipynb, key)
        try:
            pk, merged = self.merge_match_into_notebook(nb, nb_meta=("kernelspec", "language_info", "widgets", "papermill"),
                                                        cell_meta=("papermill", "execution"))
            data = self.get_cache_record(pk).data or {}
        except KeyError:
            return None
        except Exception as exc:  # a damaged entry is a miss, said once
            print(f"[cache] {page.name}: stored entry unreadable ({type(exc).__name__}: {exc}); executing it")
            return None
        output = stage / f"{page.name}.ipynb"
        nbformat.write(merged, output)
        return Result(page, float(data.get("seconds", 0.0)), None, output, reused=True,
                      cpu_seconds=data.get("cpu_seconds"), executed_on=data.get("date"))

    def store(self, result: Result, declared: dict[str, str]) -> None:
        """Keep the executed notebook of ``result`` under the key computed now (after it ran)."""
        from jupyter_cache.base import CacheBundleIn

        key = page_key(result.page, declared, self.library)
        if key is None or result.error is not None or result.output is None:
            return
        if library_fingerprint() != self.library:  # edited while the build ran: which source ran is unknown
            print(f"[cache] {result.page.name}: not stored (the library's source changed while the build ran)")
            return
        nb = nbformat.read(result.output, as_version=4)
        nb.metadata[KEY] = key
        data = {"seconds": round(result.seconds, 2), "cpu_seconds": result.cpu_seconds, "page": result.page.name,
                "date": time.strftime("%Y-%m-%d %H:%M:%S"), "params": result.page.params}
        try:
            self.cache_notebook_bundle(CacheBundleIn(nb, result.page.name, data=json.loads(json.dumps(data, default=str))),
                                       check_validity=False, overwrite=True)
        except Exception as exc:  # a full disk or a locked database costs the reuse, not the build
            print(f"[cache] {result.page.name}: not stored ({type(exc).__name__}: {exc})")


#: the kernels of a build with the page cache keep their expensive results (:mod:`residual_response.results_cache`)
RESULTS_SWITCH = "RESIDUAL_RESPONSE_RESULTS_CACHE"


@contextlib.contextmanager
def _environment(name: str, value: str | None):
    """``os.environ[name] = value`` (unset for ``None``) inside the block: the kernel started there inherits it."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_page(cache: PageCache | None, page: Page, source_ipynb: Path, declared: dict[str, str], stage: Path) -> Result:
    """Reuse ``page`` from ``cache`` if its entry is current, else execute it (and store it).

    The result's ``cpu_seconds`` is the CPU time of the page's kernel (all its threads).
    """
    from .execute import execute

    if cache is not None:
        found = cache.lookup(page, source_ipynb, declared, stage)
        if found is not None:
            print(f"[cache] {page.name}: reused (computed {found.executed_on}, {found.seconds:.0f} s)", flush=True)
            return found
    cpu0 = _children_cpu()
    with _environment(RESULTS_SWITCH, "1" if cache is not None else os.environ.get(RESULTS_SWITCH)):
        result = execute(page, source_ipynb, stage)
    result.cpu_seconds = round(_children_cpu() - cpu0, 2)
    if cache is not None:
        cache.store(result, declared)
    return result


def open_cache(recompute: bool) -> PageCache:
    """The page cache of this build; ``recompute`` also makes every kernel recompute its cached
    results (``RESIDUAL_RESPONSE_RECOMPUTE=1``, read by :mod:`residual_response.results_cache`)."""
    if recompute:  # every result made before now is computed again, once
        os.environ["RESIDUAL_RESPONSE_RECOMPUTE"] = repr(time.time())
    cache = PageCache(recompute=recompute)
    print(f"[cache] pages: {cache.path}" + ("  (--recompute: every page is executed)" if recompute else ""), flush=True)
    return cache


def cached_others(cache: PageCache, others: list[Page], src_dir: Path) -> tuple[list[Page], dict]:
    """Of the profile's pages that ``--only`` does not name, those with a current entry (nothing runs).

    Why: a rerun of one page with other parameters should give the whole book, not one page; the
    other pages come from the cache as the profile computed them. Returns ``(pages, sources)``.
    """
    from .execute import convert
    from .params import declared_parameters

    kept, sources = [], {}
    for page in others:
        source_ipynb = convert(page, src_dir)
        declared = declared_parameters(source_ipynb)
        key = None if cache.recompute else page_key(page, declared, cache.library)
        try:
            found = key is not None and cache.match_cache_notebook(cache.prepared(page, source_ipynb, key)) is not None
        except KeyError:
            found = False
        if found:
            kept.append(page)
            sources[page.name] = (source_ipynb, declared)
    if others:
        print(f"[cache] pages not named by --only, taken from the cache: {[p.name for p in kept] or 'none'}; "
              f"left out (not in the cache): {[p.name for p in others if p not in kept] or 'none'}")
    return kept, sources


def recorded_seconds(cache: PageCache, pages: list[Page] | None = None) -> dict[str, float]:
    """The CPU seconds (else the seconds) the cache last recorded for each page name: the longest start first.

    With ``pages``, only a record made with the page's present parameters counts: the cache holds
    the runs of every profile, and the ci run of a page (seconds) must not place its publish run
    (minutes) at the end of the queue.
    """
    params = None if pages is None else {p.name: json.loads(json.dumps(p.params, default=str)) for p in pages}
    out: dict[str, float] = {}
    for record in sorted(cache.list_cache_records(), key=lambda r: r.created):
        data = record.data or {}
        value = data.get("cpu_seconds") or data.get("seconds")
        if not data.get("page") or not value:
            continue
        if params is not None and params.get(data["page"]) != data.get("params"):
            continue
        out[data["page"]] = float(value)
    return out


def report(results: list[Result]) -> None:
    """One line: how many pages were reused and how many executed."""
    reused = [r.page.name for r in results if r.reused]
    print(f"[cache] reused {len(reused)} of {len(results)} pages" + (f": {', '.join(reused)}" if reused else "")
          + f"; executed {len(results) - len(reused)}")
