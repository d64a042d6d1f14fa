"""The command line of the build: ``python scripts/build_book.py`` (module docstring of
:mod:`book_build`), and the run times it writes."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .cache import cached_others, open_cache, recorded_seconds, report
from .config import KERNEL, PROFILES, BuildError, Page, Result, UsageError, load_costs, load_pages
from .execute import check_kernel, convert, finish_page
from .html import build_html, check_no_cdn
from .markdown import BookIndex, book_index
from .parallel import default_jobs, order, run_pages
from .outdir import OutDir
from .params import check_overrides, check_parameters, declared_parameters, parse_overrides
from .stage import fill_course_page, machine_description, stage_sources

__all__ = ["main", "write_timings"]

#: The first line of ``--help``.
DESCRIPTION = "Build the book: execute its notebooks with papermill, then run Jupyter Book on the result."


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line (and exit 2), like the build's own."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(description=DESCRIPTION)
    parser.add_argument("--profile", choices=PROFILES, required=True)
    parser.add_argument("--out", type=Path, default=Path("_build"))
    parser.add_argument("--only", nargs="+", metavar="PAGE", help="build only these notebook pages")
    parser.add_argument("--param", action="append", metavar="KEY=YAML",
                        help="override one parameter of every page built (value parsed as YAML); repeatable")
    parser.add_argument("--skip-html", action="store_true", help="execute notebooks, skip jupyter-book")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="pages executed at a time, each kernel with cores/N threads (default: the cores, at most 4)")
    parser.add_argument("--recompute", action="store_true",
                        help="execute every page and recompute every cached result (the page cache is refilled)")
    return parser.parse_args(argv)


def _selected(args: argparse.Namespace, all_pages: list[Page]) -> list[Page]:
    """The pages of the profile, or those named by ``--only`` (in any profile)."""
    if not args.only:
        return [p for p in all_pages if args.profile in p.profiles]
    unknown = [n for n in args.only if n not in {p.name for p in all_pages}]
    if unknown:
        raise UsageError(f"--only: unknown page(s) {', '.join(unknown)}; "
                         f"pages: {', '.join(p.name for p in all_pages)}")
    return [p for p in all_pages if p.name in args.only]


def _checked_sources(pages: list[Page], src_dir: Path, overrides: dict) -> dict[str, tuple[Path, dict[str, str]]]:
    """Convert and check every page before anything runs (a misspelt key costs no minutes); the
    overrides each page takes are merged into its parameters."""
    sources: dict[str, tuple[Path, dict[str, str]]] = {}
    for page in pages:
        source_ipynb = convert(page, src_dir)
        check_parameters(source_ipynb, page)
        sources[page.name] = (source_ipynb, declared_parameters(source_ipynb))
    taken = check_overrides({name: declared for name, (_, declared) in sources.items()}, overrides)
    for page in pages:
        page.params = {**page.params, **taken[page.name]}
        left_out = sorted(set(overrides) - set(taken[page.name]))
        if left_out:
            print(f"[param] {page.name} has no parameter {', '.join(left_out)}; it runs without it")
    return sources


def _execute_all(pages: list[Page], sources: dict, stage: Path, results: list[Result], args: argparse.Namespace,
                 cache, index: BookIndex | None = None) -> None:
    """Reuse or execute and finish each page, appending to ``results`` in the order of ``pages``;
    one error naming every failed page. Pages run ``--jobs`` at a time, longest first."""

    def done(r: Result) -> None:
        if r.error is None:
            finish_page(r.page, stage / f"{r.page.name}.ipynb", *sources[r.page.name], stage, index)

    ran = run_pages(cache, order(pages, {**load_costs(), **recorded_seconds(cache, pages)}), sources, stage,
                    args.jobs or default_jobs(), done, args.fail_fast)
    results.extend(sorted(ran, key=lambda r: [p.name for p in pages].index(r.page.name)))
    report(results)
    failures = [r for r in results if r.error]
    if failures:
        raise BuildError(
            f"{len(failures)} of {len(pages)} notebook(s) failed; no HTML was built.\n\n"
            + "\n\n".join(r.error for r in failures if r.error)
        )


def _print_timings(results: list[Result], html_seconds: float | None, t0: float, out: Path, stage: Path,
                   index: Path | None) -> None:
    print("\nnotebook timings:")
    for r in results:
        print(f"  {r.page.name:<40} {r.seconds:8.1f} s" + ("  (reused from the page cache)" if r.reused else ""))
    if html_seconds is not None:
        print(f"  {'(jupyter-book build)':<40} {html_seconds:8.1f} s")
    print(f"  {'(total)':<40} {time.perf_counter() - t0:8.1f} s")
    print(f"timings: {out / 'timings.json'}")
    print(f"book: {index}" if index else f"executed notebooks: {stage} (HTML skipped)")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    from residual_response.signals import describe, exit_status, terminate_as_interrupt

    with terminate_as_interrupt():  # SIGTERM and SIGHUP end the build as Ctrl-C does
        try:
            return _build(args)
        except KeyboardInterrupt as exc:
            print(f"error: {describe(exc)}", file=sys.stderr)
            return exit_status(exc)


def _build(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    out = args.out.resolve()
    stage, src_dir = out / "stage", out / "src"
    results: list[Result] = []
    index: Path | None = None
    html_seconds: float | None = None
    outdir: OutDir | None = None
    kept = False  # the build ran (done or failed): its timings are written, the earlier build's entries go
    try:
        overrides = parse_overrides(args.param)
        all_pages = load_pages(args.profile)
        pages = _selected(args, all_pages)
        _check_charts()
        outdir = OutDir(out).open()  # checked and created; an earlier build's entries moved aside
        sources = _checked_sources(pages, src_dir, overrides)
        cache = open_cache(args.recompute)
        others = [p for p in all_pages if args.only and args.profile in p.profiles and p not in pages]
        reused, reused_sources = cached_others(cache, others, src_dir)  # --only: the rest of the book
        pages, sources = pages + reused, {**sources, **reused_sources}
        skipped = [p.name for p in all_pages if p not in pages]
        if skipped:
            print(f"[stage] not built in this run (dropped from the toc): {skipped}")
        stage_sources(stage, all_pages, pages, partial=bool(args.only))
        links = book_index()
        print(f"[stage] {stage}  (kernel {KERNEL!r} runs {check_kernel()})", flush=True)
        kept = True  # the pages run: their timings are written, the earlier build's entries go
        _execute_all(pages, sources, stage, results, args, cache, links)
        fill_course_page(stage, all_pages, results)

        from residual_response.pages.plots import write_vega_bundle

        bundle = write_vega_bundle(stage / "_static")
        print(f"[stage] vega bundle: {bundle} ({bundle.stat().st_size / 1e6:.1f} MB)")
        if not args.skip_html:
            th = time.perf_counter()
            index = build_html(stage, out / "jupyter-book.log")
            html_seconds = time.perf_counter() - th
            check_no_cdn(index.parent)
    except UsageError as exc:
        kept = False
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"\nbuild_book: FAILED\n{exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the machine, not a page: a disk that filled up, a folder that vanished
        kept = True
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except BaseException:  # interrupted (Ctrl-C, SIGTERM, SIGHUP): --out as it was found
        kept = False
        raise
    finally:
        if outdir is not None:
            if kept:
                outdir.discard()
                if results or html_seconds is not None:
                    write_timings(out, args.profile, results, html_seconds, t0)
            else:
                outdir.restore()  # a refused or interrupted build leaves --out as it found it
    _print_timings(results, html_seconds, t0, out, stage, index)
    return 0


def _check_charts() -> None:
    """Under an address-space limit, vl-convert's V8 cannot draw the pages' charts (it aborts the
    kernel); say so in one line before anything runs (:mod:`residual_response.pages.plots.convert`)."""
    from residual_response.pages.plots.convert import V8Unavailable, check_v8

    try:
        check_v8()
    except V8Unavailable as exc:
        raise UsageError(f"the pages' charts cannot be drawn here: {exc}") from None


def write_timings(out: Path, profile: str, results: list[Result], html_seconds: float | None, t0: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "profile": profile,
        "machine": machine_description(),
        "notebooks": {
            r.page.name: {"seconds": round(r.seconds, 2), "cpu_seconds": r.cpu_seconds, "reused": r.reused,
                          "ok": r.error is None, "params": r.page.params}
            for r in results
        },
        "html_build_seconds": None if html_seconds is None else round(html_seconds, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
    }
    (out / "timings.json").write_text(json.dumps(data, indent=2) + "\n")
