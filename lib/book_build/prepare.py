"""The models a build makes before the pages that load them: the stand-ins' de-quantised weights
and the trained toy, each a job of its own.

Why: on a fresh clone the first pages to start (the longest) load the same models, and none is in
the model cache yet. One page builds each model (the toy's training is single-threaded and takes
about two minutes) while every other page that needs it waits on the cache's lock with its core
idle. As jobs of their own, the models are built first, side by side, and beside them run the
pages that need none of them; a page starts once its models exist (:func:`.parallel.run_pages`).
"""

from __future__ import annotations

from .config import Page

__all__ = ["absent_models", "build_model"]


def absent_models(pages: list[Page], sources: dict, costs: dict[str, float]) -> dict[str, set[str]]:
    """Registry models the ``pages`` load that are not built yet, longest to build first (by ``costs``,
    ``costs:`` of book/pages.yml, where a model name gives the seconds to build it), each with the
    names of the pages that load it. ``sources``: page name -> ``(notebook, declared parameters)``."""
    from .cache import model_fingerprint, page_models

    needed: dict[str, set[str]] = {}
    for page in pages:
        for name in page_models(page, sources[page.name][1]):
            needed.setdefault(name, set()).add(page.name)
    absent = [name for name in needed if model_fingerprint(name) == "absent"]
    return {name: needed[name] for name in sorted(absent, key=lambda n: -costs.get(n, 0.0))}


def build_model(name: str) -> tuple[str, str | None]:
    """Build registry model ``name`` into the model cache (a worker's job): ``(name, None)``, or
    ``(name, error)`` where it fails; the pages that load it then fail with the library's own message."""
    try:
        from residual_response.models import load_model

        load_model(name)
        return name, None
    except Exception as exc:  # the page reports it, in its own words
        return name, f"{type(exc).__name__}: {exc}"

