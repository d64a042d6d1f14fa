"""The student notebooks: what Jupyter shows a student, and that they run.

The first tests convert small notebooks by hand (no build needed). The others need a built book
(``BOOK_HTML_DIR``, as in test_book_render.py; ``make test`` builds one) and run every student
notebook the build wrote (``<stage>/_static/student``), as a student opens it with ``make notebooks``
(a fresh kernel, the results cache switched on, so the build's computations at the same values are read):

* with its stubs left empty, it runs to its end, and each check prints "not implemented yet" in
  one line, with no traceback anywhere;
* with its stubs filled from the page's solutions (``<out>/student-filled``, written by the build
  for pages with build-it-yourself exercises), every check passes. A notebook without stubs is the
  same notebook both ways, so it runs once.

The run times go to ``<out>/student-timings.json`` (the instructor page quotes them).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest

import book_build
from book_build.markdown import MYST_LEFTOVER_RE

REPO = Path(__file__).resolve().parents[2]
HTML_DIR = Path(os.environ.get("BOOK_HTML_DIR", REPO / "_build" / "stage" / "_build" / "html"))
STAGE = HTML_DIR.parents[1]
OUT = HTML_DIR.parents[2]
STUDENT = STAGE / book_build.STUDENT_DIR
FILLED = OUT / book_build.FILLED_DIR
TIMINGS = OUT / "student-timings.json"

pytestmark = pytest.mark.book


# --------------------------------------------------------------------------------------------
# The conversion, on notebooks made here
# --------------------------------------------------------------------------------------------


def _page_notebook():
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        md("(p)=\n# Page\n\n```{admonition} On this page\n:class: note\nA {term}`kick` and {term}`layers <layer>`;"
           " see {doc}`method`, {doc}`the notes <notation>`, {eq}`eq-chi` and {cite}`olsson2022incontext`.\n```"),
        code("# Parameters: defaults for a run by hand.\nT = 4  # length of one copy\nseed = 0  # the sequence",
             metadata={"tags": ["parameters", "remove-cell"]}),
        code("from residual_response.page import *\nfrom residual_response import induction"),
        code("res = induction_scores(lm, T=T)\nglue('n', 3.14159, display=False)"),
        md("The value is {glue:text}`n:.2f`, from `induction_scores` and again `induction_scores`."),
        md("## Build it yourself: one thing\n\n```{admonition} Build it yourself 1 (difficulty ★☆☆): a thing\n:class: tip\n"
           "Write it. Before you\nrun it: what is the score?\n```"),
        code("import numpy as np\nfrom residual_response.exercises import check_twin_score",
             metadata={"tags": ["exercise-imports"]}),
        code("def twin_score(chi_rep, chi_twin, T):\n    \"\"\"Doc.\"\"\"\n    raise NotImplementedError",
             metadata={"tags": ["stub"]}),
        md(":::{dropdown} Hint 1: index arrays\nUse `np.arange`.\n:::"),
        code("def twin_score(chi_rep, chi_twin, T):\n    return 1.0", metadata={"tags": ["solution", "hide-input"]}),
        code("check_twin_score(twin_score);", metadata={"tags": ["check"]}),
        md("The score is 1.\n\n(learned)=\n## What you learned\n\n* things"),
    ]
    return nb


def _convert(fill: bool = False):
    glue = {"n": {"text/plain": "3.14159"}}
    return book_build.student_notebook(_page_notebook(), {"T": 8}, index=book_build.book_index(), page="emergence",
                                       glue=glue, fill_stubs=fill)


def test_myst_becomes_plain_markdown_with_links_and_values():
    nb = _convert()
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert not MYST_LEFTOVER_RE.search(text), MYST_LEFTOVER_RE.search(text)
    assert "> **On this page**" in text and "(p)=" not in text
    assert "[kick](../../notation.html#term-kick)" in text and "[layers](../../notation.html#term-layer)" in text
    assert "[The method](../../method.html)" in text and "[the notes](../../notation.html)" in text
    assert "](../../method.html#equation-eq-chi)" in text and "[Olsson et al., 2022](../../bibliography.html)" in text
    assert "The value is 3.14, from [`induction_scores`](../../api.html#residual_response.induction.induction_scores)" \
           " and again `induction_scores`." in text  # the first mention links, the second stays code
    # hints stay folded, as in the book; so does the answer to "Before you run it", up to the heading
    assert "<details><summary>Hint 1: index arrays</summary>\n\nUse `np.arange`.\n\n</details>" in text
    answer = f"<details><summary>{book_build.ANSWER_TITLE}</summary>\n\nThe score is 1.\n\n</details>"
    assert answer + "\n\n## What you learned" in text


def test_a_dropdown_title_keeps_its_code_and_links_inside_the_summary():
    assert book_build.details("Hint: `np.argmax` and [the page](a.html)", "x") == \
        '<details><summary>Hint: <code>np.argmax</code> and <a href="a.html">the page</a></summary>\n\nx\n\n</details>'


def test_no_answer_is_folded_after_a_check_whose_exercise_asks_nothing():
    nb = _page_notebook()
    nb.cells[5].source = nb.cells[5].source.replace(" Before you\nrun it: what is the score?", "")
    nb = book_build.student_notebook(nb, {"T": 8}, index=book_build.book_index(), page="emergence",
                                     glue={"n": {"text/plain": "3.14159"}})
    assert not any("<details><summary>The answer" in c.source for c in nb.cells)


def test_one_parameter_cell_with_the_values_in_use_and_their_comments():
    nb = _convert()
    params = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert params[0].source.splitlines() == [book_build.PARAMETERS_HEADER, "T = 8  # length of one copy",
                                             "seed = 0  # the sequence"]


def test_merged_parameters_keep_multiline_values_apart_and_add_names_without_a_default():
    defaults = 'models = [\n    "a",\n    "b",\n]  # registry names\neps = 1e-2  # strength'
    merged = book_build.merged_parameters(defaults, {"models": ["c"], "eps": 0.1, "extra": "x"})
    assert merged.splitlines() == [book_build.PARAMETERS_HEADER, 'models = ["c"]  # registry names',
                                   "eps = 0.1  # strength", 'extra = "x"']


def test_stubs_stay_solutions_go_and_imports_come_first_by_name():
    nb = _convert()
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0].source
    # a visible cell's silent glue call is stripped, so glue is not imported either
    assert "from residual_response.page import (" in first and "induction_scores" in first and "glue" not in first
    assert "from residual_response.exercises import check_twin_score" in first and "import numpy as np" in first
    assert "load_model" not in first  # only the names the notebook uses
    sources = "\n".join(c.source for c in code)
    assert "import *" not in sources and "raise NotImplementedError" in sources and "return 1.0" not in sources
    assert "your code here" not in sources
    assert sources.count("check_twin_score(twin_score)") == 1
    filled = "\n".join(c.source for c in _convert(fill=True).cells if c.cell_type == "code")
    assert "return 1.0" in filled and "raise NotImplementedError" not in filled


def test_the_build_refuses_a_page_whose_solution_fails_its_check():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("check(f);", metadata={"tags": ["check"]})
    cell.outputs = [nbformat.v4.new_output("stream", text="✗ f (case): expected 1, received 2\n")]
    nb.cells = [cell]
    with pytest.raises(book_build.BuildError, match="does not pass with the page's solution: ✗ f"):
        book_build.verify_checks(nb, "page")
    cell.outputs = [nbformat.v4.new_output("stream", text="✓ f: matches\n")]
    assert book_build.verify_checks(nb, "page") == 1


def _exercise_sources() -> list[Path]:
    return sorted(p for p in (REPO / "notebooks").glob("*.md") if ":tags: [stub]" in p.read_text())


@pytest.mark.parametrize("source", _exercise_sources(), ids=lambda p: p.stem)
def test_each_pages_solutions_pass_their_checks_and_the_stubs_do_not(source: Path, capsys):
    """The build-it-yourself cells of a page on their own (imports, stub, solution, check), without
    the rest of the page: the solutions pass, the stubs say "not implemented yet"."""
    import jupytext

    cells = [c for c in jupytext.read(source).cells if c.cell_type == "code"]
    tagged = [(set(c.metadata.get("tags", [])), c.source) for c in cells]
    namespace: dict = {}
    for tags, src in tagged:
        if "exercise-imports" in tags or "stub" in tags:
            exec(src, namespace)
    for tags, src in tagged:
        if "check" in tags:
            exec(src, namespace)
    stubs = capsys.readouterr().out.strip().splitlines()
    assert stubs and all(line.endswith(": not implemented yet") for line in stubs), stubs
    after_stub = False
    for tags, src in tagged:  # the solution that follows each stub (not the answers of the other exercises)
        if "stub" in tags:
            after_stub = True
        elif "solution" in tags and after_stub:
            exec(src, namespace)
            after_stub = False
    for tags, src in tagged:
        if "check" in tags:
            exec(src, namespace)
    solved = capsys.readouterr().out.strip().splitlines()
    assert len(solved) == len(stubs) and all(line.startswith("✓") for line in solved), solved


# --------------------------------------------------------------------------------------------
# The notebooks a build wrote
# --------------------------------------------------------------------------------------------


def student_notebooks() -> list[Path]:
    return sorted(STUDENT.glob("*-student.ipynb")) if STUDENT.is_dir() else []


@pytest.fixture(scope="module")
def built():
    if not STUDENT.is_dir():
        pytest.skip(f"no student notebooks at {STUDENT}: build the book (scripts/build_book.py) or set BOOK_HTML_DIR")
    return STUDENT


def _run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[nbformat.NotebookNode, float]:
    """Execute a student notebook as ``make notebooks`` opens it: a fresh kernel whose results cache
    is switched on, so that what the build computed at the same values is read, not recomputed."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    monkeypatch.setenv("RESIDUAL_RESPONSE_RESULTS_CACHE", "1")  # the kernel inherits it
    out = tmp_path / path.name
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(path), str(out), kernel_name="python3", cwd=str(STAGE), progress_bar=False,
                                   execution_timeout=1800)
    except PapermillExecutionError as exc:
        pytest.fail(f"{path.name} stops in cell {exc.cell_index}: {exc.ename}: {exc.evalue}")
    return nbformat.read(out, as_version=4), time.perf_counter() - start


def _record(name: str, variant: str, seconds: float) -> None:
    """Add one run to ``student-timings.json`` (the format of book/student-timings.json, which the
    instructor page's table reads: copy the file there to re-measure the course), with the machine,
    the date and the highest load average seen while the notebooks ran."""
    import datetime

    from book_build.stage import machine_description

    data = json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else {}
    if "notebooks" not in data:  # an older layout: start again
        data = {"notebooks": {}}
    data["notebooks"].setdefault(name, {})[variant] = round(seconds, 1)
    data.update(machine=machine_description(), date=datetime.date.today().strftime("%B %Y"),
                load=round(max(data.get("load", 0.0), os.getloadavg()[0]), 1))
    TIMINGS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _check_lines(nb) -> list[str]:
    return [text for _, text in book_build.check_outputs(nb)]


def _use_lines(nb) -> list[str]:
    return [text for _, text in book_build.use_outputs(nb)]


@pytest.mark.parametrize("path", student_notebooks(), ids=lambda p: p.stem)
def test_a_student_notebook_reads_as_markdown_and_imports_by_name(path: Path, built):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            m = MYST_LEFTOVER_RE.search(cell.source)
            assert not m, f"{path.name}, cell {i}: raw MyST {m.group(0)!r} in {cell.source[:200]!r}"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert not any(re.search(r"^\s*from \S+ import \*", s, re.M) for s in code), f"{path.name}: a star import"
    assert "from residual_response.page import (" in code[0], f"{path.name}: the first code cell is {code[0][:200]!r}"


@pytest.mark.parametrize("path", student_notebooks(), ids=lambda p: p.stem)
def test_a_student_notebook_with_empty_stubs_runs_to_its_end(path: Path, built, tmp_path: Path, monkeypatch):
    nb, seconds = _run(path, tmp_path, monkeypatch)
    _record(path.stem, "stubs empty", seconds)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    for text in _check_lines(nb) + _use_lines(nb):
        lines = text.strip().splitlines()
        assert len(lines) == 1 and lines[0].endswith(": not implemented yet"), f"{path.name}: printed {text!r}"
        assert "Traceback" not in text


@pytest.mark.parametrize("path", sorted(FILLED.glob("*-student.ipynb")) if FILLED.is_dir() else [],
                         ids=lambda p: p.stem)
def test_a_student_notebook_with_the_solutions_passes_every_check(path: Path, built, tmp_path: Path, monkeypatch):
    nb, seconds = _run(path, tmp_path, monkeypatch)
    _record(path.stem, "stubs filled", seconds)
    lines = _check_lines(nb)
    assert lines, f"{path.name} has stubs but no check"
    failed = [t for t in lines if not t.startswith("✓")]
    assert not failed, f"{path.name}: {failed}"
    for text in _use_lines(nb):  # the solutions put to work show their table, no one-line refusal
        assert text.strip() and "not implemented yet" not in text and "✗" not in text, f"{path.name}: use-it {text!r}"


def test_every_folded_answer_cell_is_a_solution_the_student_notebook_drops():
    """A code cell folded on the page (``hide-cell``) is an exercise's answer: without the
    ``solution`` tag the student notebook keeps it, and the answer leaks to the student."""
    import jupytext

    leaks = []
    for source in sorted((REPO / "notebooks").glob("*.md")):
        for i, cell in enumerate(jupytext.read(source).cells):
            tags = set(cell.metadata.get("tags", []))
            if cell.cell_type == "code" and "hide-cell" in tags and "solution" not in tags:
                leaks.append(f"{source.name}, cell {i}")
    assert not leaks, f"folded answer cells without the solution tag: {leaks}"


def test_each_older_exercise_gets_its_numbered_placeholder_when_it_shares_a_cell_with_a_solution():
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        md("## Exercises\n\n```{admonition} Exercise 1 (★, 5 min): one\n:class: tip\nDo one.\n```"),
        code("x = 1", metadata={"tags": ["hide-cell", "solution"]}),
        md(":::{dropdown} Solution 1\nOne.\n:::\n\n```{admonition} Exercise 2 (★, 5 min): two\n:class: tip\nDo two.\n```"),
        code("y = 2", metadata={"tags": ["hide-cell", "solution"]}),
        md(":::{dropdown} Solution 2\nTwo.\n:::"),
    ]
    out = book_build.student_notebook(nb, {}, index=book_build.book_index(), page="emergence")
    sources = [c.source for c in out.cells if c.cell_type == "code"]
    assert "# Exercise 1: your code here" in sources and "# Exercise 2: your code here" in sources, sources
    assert not any("x = 1" in s or "y = 2" in s for s in sources)
    assert not any("Solution" in c.source for c in out.cells if c.cell_type == "markdown")


def test_cells_that_only_glue_or_assert_for_the_book_are_dropped_unless_a_later_cell_needs_them():
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    hidden = {"tags": ["remove-cell"]}
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        code("from residual_response.page import *\nx = 2"),
        md("The value is {glue:text}`n`."),
        code("words = f'{x} items'\nglue('n', words, display=False)", metadata=hidden),  # glue only: dropped
        code("# The claim of the page.\nassert x > 1, x", metadata={"tags": ["remove-cell", "nbval-check-output"]}),
        code("y = x + 1  # used below\nglue('m', y, display=False)\n# checked on every build\nassert y == 3",
             metadata=hidden),  # kept for y, without its glue and assert
        code("for key in ['a']:\n    glue(key, 1, display=False)"),  # shown, but glues only: dropped
        code("z = x * 3\nglue('z', z, display=False)"),  # shown, computes z: kept
        code("print(y)"),
    ]
    out = book_build.student_notebook(nb, {}, index=book_build.book_index(), page="emergence",
                                      glue={"n": {"text/plain": "'2 items'"}})
    sources = [c.source for c in out.cells if c.cell_type == "code"]
    assert not any("words" in s or "assert x" in s or "for key" in s for s in sources), sources
    assert "y = x + 1  # used below" in sources and "print(y)" in sources, sources
    assert "z = x * 3" in sources, sources  # shown, computes z: kept, without its silent glue
    assert "The value is 2 items." in [c.source for c in out.cells if c.cell_type == "markdown"]


def test_a_book_only_cell_whose_name_a_solution_reads_stays():
    code = nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [code("w = 5\nglue('w', w, display=False)", metadata={"tags": ["remove-cell"]}),
                code("def f():\n    raise NotImplementedError", metadata={"tags": ["stub"]}),
                code("def f():\n    return w", metadata={"tags": ["solution"]})]
    out = book_build.student_notebook(nb, {}, fill_stubs=True)
    assert "w = 5" in [c.source for c in out.cells if c.cell_type == "code"]


def test_every_use_it_cell_of_a_page_reaches_its_student_notebook():
    """A use-it cell that follows an earlier exercise's prompt is not that exercise's answer: the
    notebook keeps it, so the page and its notebook hold as many stubs, checks and use-it cells."""
    import jupytext

    from book_build.exercises import CHECK_TAG, STUB_TAG, USE_TAG
    from book_build.student import student_notebook

    def count(cells, tag):
        return sum(tag in c.metadata.get("tags", []) for c in cells if c.cell_type == "code")

    for source in sorted((REPO / "notebooks").glob("*.md")):
        page = jupytext.read(source)
        counts = {tag: count(page.cells, tag) for tag in (STUB_TAG, CHECK_TAG, USE_TAG)}
        if not any(counts.values()):
            continue
        student = student_notebook(jupytext.read(source), {})
        got = {tag: count(student.cells, tag) for tag in counts}
        assert got == counts, f"{source.name}: page {counts}, student notebook {got}"
