"""Pages executed side by side: ``--jobs N`` kernels at a time, each with its share of the cores.

Why: a page's computations are many small operations (a forward pass of a few hundred positions
through a 135M model), and torch splits each of them over its threads with a cost per split; two
pages on one thread each keep both cores busy with no split at all. The kernels of a build share
their expensive results through :mod:`residual_response.results_cache`, whose entry locks make a
page that needs a result another page is computing wait for it instead of computing it twice.

Each worker is a separate process (``spawn``) that runs :func:`.cache.run_page` for one page at
a time; the kernel it starts inherits ``OMP_NUM_THREADS`` = cores // jobs. Pages start longest
first (:func:`order`), by the time the page cache recorded for them, else by ``costs:`` in
``book/pages.yml``, so that the last page to finish is a short one; a page whose ``after:`` names
pages of the same build starts only once they have ended (:func:`waits_for`). The models the pages
load that are not built yet (a fresh clone's stand-ins and toy) are jobs of their own that start
first, and a page starts once its models exist (:mod:`.prepare`). Once fewer pages run
than kernels (the last ones, or while the others wait for their ``after:``), the cores they leave
free are shared out to the pages running (:func:`cores_per_page`, written to a file the kernels read before each induction job:
:data:`residual_response.workers.CORE_SHARE_VARIABLE`), whose jobs then run their sequences in
that many one-thread processes.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import Callable

from .config import Page, Result, load_costs
from .prepare import absent_models, build_model

__all__ = ["default_jobs", "order", "run_pages", "startable", "waits_for"]

#: environment variables that set the threads of a kernel's numerical libraries
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_jobs() -> int:
    """Kernels at a time by default: every core, at most 4 (each page's models need memory)."""
    from residual_response.threads import available_cores

    return max(1, min(4, available_cores()))


def order(pages: list[Page], seconds: dict[str, float]) -> list[Page]:
    """``pages`` longest first by ``seconds`` (a page without a time keeps its place among the unknown, first),
    each after the pages of its ``after:`` that are among ``pages`` (a one-at-a-time build runs them in this order)."""
    known = sorted((p for p in pages if p.name in seconds), key=lambda p: -seconds[p.name])
    wanted = [p for p in pages if p.name not in seconds] + known
    placed: list[Page] = []
    while wanted:
        ready = next(p for p in wanted if not waits_for(p, wanted))  # config refuses cycles, so one is ready
        wanted.remove(ready)
        placed.append(ready)
    return placed


def waits_for(page: Page, unfinished: list[Page]) -> list[str]:
    """The pages of ``page``'s ``after:`` among ``unfinished``: it may start once this is empty.

    Why: a page that reads what another page of the build stores (the paper page reads the cross-checks
    page's stored ablation results) would otherwise wait on that entry's lock, or compute it again.
    """
    names = {p.name for p in unfinished}
    return [a for a in page.after if a in names]


def startable(waiting: list[Page], unfinished: list[Page], loaders: dict[str, set[str]], unbuilt: set[str]) -> list[Page]:
    """The ``waiting`` pages that may start now, in their order: no page of their ``after:`` among
    ``unfinished``, and none of the ``unbuilt`` models they load (``loaders``: model -> page names)."""
    held = {page for model in unbuilt for page in loaders.get(model, ())}
    return [p for p in waiting if not waits_for(p, unfinished) and p.name not in held]


def cores_per_page(cores: int, running: int) -> int:
    """Cores for each of the ``running`` pages on ``cores`` (a page waiting for its ``after:`` uses none)."""
    return max(1, cores // max(1, running))


def _write_share(path: Path, cores: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{cores}\n")
    os.replace(tmp, path)  # a kernel reads the old count or the new one, never half a file


def _worker_init(threads: int, share_file: str | None = None) -> None:
    from residual_response.workers import CORE_SHARE_VARIABLE

    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if share_file:
        os.environ[CORE_SHARE_VARIABLE] = share_file


def _run_one(cache, page: Page, source_ipynb: Path, declared: dict[str, str], stage: Path) -> Result:
    from .cache import run_page

    return run_page(cache, page, source_ipynb, declared, stage)


def run_pages(cache, pages: list[Page], sources: dict, stage: Path, jobs: int,
              done: Callable[[Result], None], fail_fast: bool = False) -> list[Result]:
    """Reuse or execute every page, ``jobs`` at a time; ``done(result)`` is called as each one ends.

    Pages with a current entry in ``cache`` are taken from it here, before any worker starts.
    Returns the results in the order of ``pages``. A page's :class:`~.config.UsageError` (a value
    it rejects) is raised here once the pages running beside it have ended.
    """
    from .cache import run_page

    by_name: dict[str, Result] = {}
    todo = []
    for page in pages:
        found = cache.lookup(page, *sources[page.name], stage) if cache is not None else None
        if found is None:
            todo.append(page)
            continue
        print(f"[cache] {page.name}: reused (computed {found.executed_on}, {found.seconds:.0f} s)", flush=True)
        by_name[page.name] = found
        done(found)
    if jobs <= 1 or len(todo) <= 1:
        for page in todo:
            by_name[page.name] = result = run_page(cache, page, *sources[page.name], stage)
            done(result)
            if result.error and fail_fast:
                break
    else:
        _in_workers(cache, todo, sources, stage, jobs, by_name, done, fail_fast)
    return [by_name[p.name] for p in pages if p.name in by_name]


def _in_workers(cache, pages: list[Page], sources: dict, stage: Path, jobs: int, by_name: dict,
                done: Callable[[Result], None], fail_fast: bool) -> None:
    from residual_response.threads import available_cores

    cores = available_cores()
    threads = max(1, cores // jobs)
    print(f"[execute] {len(pages)} pages, {jobs} at a time, {threads} thread(s) each", flush=True)
    fd, name = tempfile.mkstemp(prefix="core-share-")  # outside the stage: nothing of it reaches the book
    os.close(fd)
    share = Path(name)
    _write_share(share, cores_per_page(cores, min(jobs, len(pages))))
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                                                initargs=(threads, str(share))) as pool:
        waiting = list(pages)  # in the order given; a page starts once the pages of its `after:` have ended
        loaders = absent_models(pages, sources, load_costs())  # model -> the pages that load it
        to_build, unbuilt = list(loaders), set(loaders)  # models are built first, longest first
        for model in to_build:
            print(f"[models] {model}: built first, for {', '.join(sorted(loaders[model]))}", flush=True)
        running: dict = {}  # future -> page, or the name of a model being built

        def start() -> None:
            while to_build and len(running) < jobs:
                model = to_build.pop(0)
                running[pool.submit(build_model, model)] = model
            unfinished = waiting + [p for p in running.values() if isinstance(p, Page)]
            for page in startable(waiting, unfinished, loaders, unbuilt)[:jobs - len(running)]:
                waiting.remove(page)
                running[pool.submit(_run_one, cache, page, *sources[page.name], stage)] = page

        start()
        try:
            while running:
                finished, _ = concurrent.futures.wait(list(running), return_when=concurrent.futures.FIRST_COMPLETED)
                stop = False
                for future in finished:
                    if not isinstance(running.pop(future), Page):
                        model, error = future.result()
                        unbuilt.discard(model)
                        print(f"[models] {model}: " + (f"not built ({error})" if error else "built"), flush=True)
                        continue
                    result = future.result()
                    by_name[result.page.name] = result
                    done(result)
                    stop = stop or bool(result.error and fail_fast)
                if stop:
                    break
                start()
                if running:
                    each = cores_per_page(cores, len(running))
                    _write_share(share, each)
                    if each > threads:
                        print(f"[execute] {len(running)} job(s) running, {len(waiting)} waiting: {each} cores each",
                              flush=True)
        finally:
            for future in running:
                future.cancel()
            share.unlink(missing_ok=True)
