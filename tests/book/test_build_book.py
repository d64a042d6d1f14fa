"""The book builder's own logic (lib/book_build, run by scripts/build_book.py): pages.yml, the toc,
labels, the CDN check.

These run without executing any notebook. One test reads the real book/pages.yml and _toc.yml:
every page a profile builds must be in the table of contents, and every toc entry must be a
prose page or a notebook page, so a page added to one file and forgotten in the other fails here
rather than as a Sphinx warning in a 10-minute build.
"""

from pathlib import Path

import importlib
import nbformat
import pytest
import yaml

import book_build as build_book

REPO = Path(__file__).resolve().parents[2]


def _pages_file(tmp_path, text):
    p = tmp_path / "pages.yml"
    p.write_text(text)
    return p


def test_each_expands_and_profiles_override(tmp_path):
    f = _pages_file(tmp_path, """
pages:
  - name: "model-{model}"
    source: notebooks/model_page.md
    each: [{model: a-1}, {model: b-2}]
    params:
      all: {T: 4, eps: 0.1}
      ci: {T: 8}
  - name: only-publish
    source: notebooks/emergence.md
    profiles: [publish]
""")
    pages = build_book.load_pages("ci", f)
    by_name = {p.name: p for p in pages}
    assert list(by_name) == ["model-a-1", "model-b-2", "only-publish"]
    assert by_name["model-a-1"].params == {"T": 8, "eps": 0.1, "model": "a-1"}
    assert by_name["model-b-2"].template and not by_name["only-publish"].template
    assert by_name["only-publish"].profiles == ("publish",)
    assert build_book.load_pages("publish", f)[0].params["T"] == 4


@pytest.mark.parametrize("text, message", [
    ("pages:\n  - name: x\n", "needs name and source"),
    ("pages:\n  - {name: x, source: notebooks/emergence.md, params: {nightly: {}}}\n", "params keys"),
    ("pages:\n  - {name: x, source: notebooks/emergence.md, profiles: [nightly]}\n", "unknown profile"),
    ("pages:\n  - {name: Bad_Name, source: notebooks/emergence.md}\n", "must match"),
    ("pages:\n  - {name: x, source: notebooks/emergence.md}\n  - {name: x, source: notebooks/emergence.md}\n",
     "more than once"),
    ("pages:\n  - {name: x, source: notebooks/missing.md}\n", "does not exist"),
    ("pages:\n  - {name: method, source: notebooks/emergence.md}\n", "clashes with a prose page"),
    ("pages:\n  - {name: 'm-{model}', source: notebooks/emergence.md, each: [{other: 1}]}\n", "not in `each`"),
    ("pages:\n  - {name: x, source: notebooks/emergence.md, after: y}\n", "after must be a list"),
    ("pages:\n  - {name: x, source: notebooks/emergence.md, after: [y]}\n", "after names \\['y'\\]"),
    ("pages:\n  - {name: x, source: notebooks/emergence.md, after: [x]}\n", "after names \\['x'\\]"),
    ("pages:\n  - {name: x, source: notebooks/emergence.md, after: [y]}\n"
     "  - {name: y, source: notebooks/emergence.md, after: [x]}\n", "cycle: x -> y -> x"),
])
def test_bad_pages_file_is_refused_with_one_message(tmp_path, text, message):
    with pytest.raises(build_book.BuildError, match=message):
        build_book.load_pages("ci", _pages_file(tmp_path, text))


def test_after_orders_pages_and_holds_them_until_their_pages_end(tmp_path):
    from book_build.parallel import order, waits_for

    f = _pages_file(tmp_path, """
pages:
  - {name: paper, source: notebooks/paper.md, after: [cc, ms]}
  - {name: cc, source: notebooks/cross_checks.md}
  - {name: ms, source: notebooks/model_sections.md}
  - {name: other, source: notebooks/emergence.md}
""")
    pages = build_book.load_pages("ci", f)
    by = {p.name: p for p in pages}
    assert by["paper"].after == ("cc", "ms") and by["cc"].after == ()
    # longest first would start the paper first; its `after:` holds it until both have run
    ran = [p.name for p in order(pages, {"paper": 100, "cc": 50, "ms": 10, "other": 1})]
    assert ran.index("paper") > max(ran.index("cc"), ran.index("ms")), ran
    assert ran.index("cc") < ran.index("ms") < ran.index("other"), ran  # the others keep longest first
    assert waits_for(by["paper"], pages) == ["cc", "ms"]
    assert waits_for(by["paper"], [by["ms"], by["other"]]) == ["ms"]
    assert waits_for(by["paper"], [by["other"]]) == []  # a page not in this build (or ended) holds nothing
    assert [p.name for p in order([by["paper"], by["other"]], {})] == ["paper", "other"]


def test_models_not_built_yet_are_jobs_of_their_own_and_hold_the_pages_that_load_them(tmp_path, monkeypatch):
    from book_build.parallel import startable
    from book_build.prepare import absent_models

    f = _pages_file(tmp_path, """
pages:
  - {name: cc, source: notebooks/cross_checks.md, params: {all: {models: [toy-gpt2, random-llama]}}}
  - {name: em, source: notebooks/emergence.md, params: {all: {models: [smollm2-135m, random-gpt2]}}}
  - {name: rnd, source: notebooks/emergence.md, params: {all: {models: [random-gpt2]}}}
  - {name: paper, source: notebooks/paper.md, after: [cc], params: {all: {models: [random-gpt2]}}}
""")
    pages = build_book.load_pages("ci", f)
    by = {p.name: p for p in pages}
    sources = {p.name: (None, {}) for p in pages}
    monkeypatch.setenv("RESIDUAL_RESPONSE_CACHE", str(tmp_path / "cache"))  # nothing built yet
    loaders = absent_models(pages, sources, {"toy-gpt2": 140, "smollm2-135m": 30})
    assert list(loaders) == ["toy-gpt2", "smollm2-135m"]  # longest to build first; random models need no building
    assert loaders == {"toy-gpt2": {"cc"}, "smollm2-135m": {"em"}}
    # while the toy is built, only the pages that load neither unbuilt model may start; the paper waits for cc
    assert [p.name for p in startable(pages, pages, loaders, {"toy-gpt2", "smollm2-135m"})] == ["rnd"]
    assert [p.name for p in startable(pages, pages, loaders, {"toy-gpt2"})] == ["em", "rnd"]
    assert [p.name for p in startable(pages, pages, loaders, set())] == ["cc", "em", "rnd"]
    assert [p.name for p in startable([by["paper"]], [by["paper"]], loaders, set())] == ["paper"]
    (tmp_path / "cache" / "models" / "toy-gpt2").mkdir(parents=True)  # built: no job for it
    assert list(absent_models(pages, sources, {})) == ["smollm2-135m"]


def test_prune_toc_drops_entries_and_empty_parts():
    toc = {"root": "intro", "parts": [
        {"caption": "A", "chapters": [{"file": "x"}, {"file": "y"}]},
        {"caption": "B", "chapters": [{"file": "z"}]},
    ]}
    pruned = build_book.prune_toc(toc, {"y", "z"})
    assert pruned["parts"] == [{"caption": "A", "chapters": [{"file": "x"}]}]
    assert build_book.toc_files(pruned) == {"intro", "x"}
    with pytest.raises(build_book.BuildError, match="root page"):
        build_book.prune_toc({"root": "intro"}, {"intro"})


def test_localise_labels_renames_figures_targets_and_references(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("(sec-a)=\n## A\nSee {numref}`fig-x` and {ref}`the section <sec-a>`; fig-xy stays."),
        nbformat.v4.new_code_cell("1", metadata={"mystnb": {"figure": {"name": "fig-x", "caption": "c"}}}),
    ]
    path = tmp_path / "p.ipynb"
    nbformat.write(nb, path)
    build_book.localise_labels(path, "model-a")
    out = nbformat.read(path, as_version=4)
    text = out.cells[0].source
    assert "(sec-a-model-a)=" in text and "{numref}`fig-x-model-a`" in text
    assert "{ref}`the section <sec-a-model-a>`" in text and "fig-xy stays" in text
    assert out.cells[1].metadata["mystnb"]["figure"]["name"] == "fig-x-model-a"


def test_cdn_check_names_the_page(tmp_path):
    (tmp_path / "ok.html").write_text("<script src='_static/vega.js'></script>")
    build_book.check_no_cdn(tmp_path)
    (tmp_path / "bad.html").write_text("<script src='https://cdn.jsdelivr.net/npm/vega@5'></script>")
    with pytest.raises(build_book.BuildError, match="bad.html"):
        build_book.check_no_cdn(tmp_path)


def test_check_parameters_refuses_unknown_ones(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("T = 4\nseed = 0", metadata={"tags": ["parameters"]})]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    page = build_book.Page(name="n", source=REPO / "notebooks" / "emergence.md", params={"T": 8}, timeout=10,
                           profiles=("ci",))
    build_book.check_parameters(path, page)
    page.params = {"T": 8, "modle": "x"}
    with pytest.raises(build_book.BuildError, match="modle"):
        build_book.check_parameters(path, page)


@pytest.mark.parametrize("profile", build_book.PROFILES)
def test_pages_and_toc_agree(profile):
    """Every page a profile builds is in _toc.yml; every toc file is a prose page or a notebook page."""
    pages = build_book.load_pages(profile)
    all_names = {p.name for prof in build_book.PROFILES for p in build_book.load_pages(prof)}
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = build_book.toc_files(toc)
    prose = {p.stem for p in (REPO / "book").glob("*.md")}
    missing = {p.name for p in pages if profile in p.profiles} - files
    assert not missing, f"{profile}: pages built but not in _toc.yml: {sorted(missing)}"
    unknown = files - prose - all_names
    assert not unknown, f"_toc.yml names files that are neither in book/ nor in book/pages.yml: {sorted(unknown)}"


# ---------------------------------------------------------------------------------------
# The rerun command: --param, unknown keys, a page's own parameter errors
# ---------------------------------------------------------------------------------------


def test_param_values_are_yaml():
    got = build_book.parse_overrides(["T=20", "models=[random-llama, toy-gpt2]", "eps=1e-3", "device=cuda",
                                      "bench_json=", "k={a: 1}", "grid=[1e-8, 1.5E+2, 3]"])
    assert got == {"T": 20, "models": ["random-llama", "toy-gpt2"], "eps": 1e-3, "device": "cuda",
                   "bench_json": None, "k": {"a": 1}, "grid": [1e-8, 150.0, 3]}
    assert build_book.parse_overrides(None) == {}


@pytest.mark.parametrize("item, message", [
    ("T", "expected KEY=VALUE"), ("=3", "expected KEY=VALUE"), ("two words=3", "expected KEY=VALUE"),
    ("T=[1,", "not valid YAML"),
])
def test_bad_param_is_a_usage_error(item, message):
    with pytest.raises(build_book.UsageError, match=message):
        build_book.parse_overrides([item])


def _page(name="n", **params):
    return build_book.Page(name=name, source=REPO / "notebooks" / "emergence.md", params=params, timeout=10,
                           profiles=("ci",))


def test_unknown_override_names_the_pages_parameters():
    em, ms = {"models": "['a']", "T": "10", "exercise_model": "'a'"}, {"models": "['a']", "n_l0": "3"}
    taken = build_book.check_overrides({"emergence": em, "model-sections": ms}, {"T": 4, "exercise_model": "b"})
    assert taken == {"emergence": {"T": 4, "exercise_model": "b"}, "model-sections": {}}
    with pytest.raises(build_book.UsageError) as err:
        build_book.check_overrides({"emergence": em}, {"modles": ["a"]})
    msg = str(err.value)
    assert "'modles'" in msg and "emergence" in msg and "models, T, exercise_model" in msg and "\n" not in msg
    with pytest.raises(build_book.UsageError) as err:
        build_book.check_overrides({"emergence": em, "model-sections": ms}, {"modles": ["a"]})
    msg = str(err.value)
    assert "emergence: models, T, exercise_model" in msg and "model-sections: models, n_l0" in msg


def _run_main(capsys, *argv):
    rc = build_book.main(list(argv))
    return rc, capsys.readouterr().err.strip().splitlines()


def test_main_exits_2_with_one_error_line_on_bad_input(capsys, tmp_path):
    out = str(tmp_path / "out")
    for argv in (["--only", "emergence", "--param", "modles=[random-llama]"],
                 ["--only", "no-such-page"],
                 ["--only", "emergence", "--param", "T=[1,"]):
        rc, err = _run_main(capsys, "--profile", "ci", "--out", out, *argv)
        assert rc == 2, argv
        assert len(err) == 1 and err[0].startswith("error: "), err
    with pytest.raises(SystemExit) as exc:  # argparse's own complaints take the same form
        build_book.main(["--only", "emergence", "--out", out])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and "--profile" in err[0]
    rc, err = _run_main(capsys, "--profile", "ci", "--out", out, "--only", "emergence", "--param", "modles=[a]")
    assert "models" in err[0] and "exercise_model" in err[0]  # the page's real parameters are named


def _failing(tmp_path, cells, index, ename="ValueError", evalue="eps must be > 0, got -1"):
    from papermill.exceptions import PapermillExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    path = tmp_path / "out.ipynb"
    nbformat.write(nb, path)
    exc = PapermillExecutionError(index, 1, "src", ename, evalue, ["Traceback ...", f"{ename}: {evalue}"])
    return build_book.parameter_error(exc, path)


def test_a_pages_parameter_check_is_reported_as_its_sentence(tmp_path):
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    cells = [md("# Title"), code("T = 4", metadata={"tags": ["parameters"]}),
             code("T = 8", metadata={"tags": ["injected-parameters"]}), code("import x"),
             code("raise ValueError('eps must be > 0, got -1')"), md("## Results"), code("1 / 0"),
             code("check()", metadata={"tags": ["parameter-check"]})]
    assert _failing(tmp_path, cells, 4) == "eps must be > 0, got -1"
    assert _failing(tmp_path, cells, 7) == "eps must be > 0, got -1"  # tagged, anywhere
    assert _failing(tmp_path, cells, 6) is None  # an error in the analysis is a real failure
    assert _failing(tmp_path, cells, 4, ename="RuntimeError") is None
    assert _failing(tmp_path, [md("# T"), code("raise ValueError('x')")], 1) is None  # no parameters cell


# ---------------------------------------------------------------------------------------
# What the build adds to a page: parameter box, student notebook, numbered tables, course table
# ---------------------------------------------------------------------------------------


def test_parameter_values_merge_defaults_and_overrides():
    declared = {"models": '["a", "b"]', "T": "10", "eps": "1e-2", "path": '""', "grid": "np.arange(3)", "x": "None"}
    got = build_book.page_parameters(declared, {"T": 20, "models": ["c"]})
    assert got == {"models": "[c]", "T": "20", "eps": "0.01", "path": "''", "grid": "np.arange(3)", "x": "null"}


def test_parameter_box_follows_the_injected_parameters():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T"),
                nbformat.v4.new_code_cell("T = 4", metadata={"tags": ["parameters", "remove-cell"]}),
                nbformat.v4.new_code_cell("T = 8", metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(T)")]
    for _ in range(2):  # a second pass replaces the box, it does not add one
        build_book.insert_parameter_box(nb, {"T": "8", "models": "[a, b]"}, "/_static/student/p-student.ipynb")
    boxes = [i for i, c in enumerate(nb.cells) if "parameter-box" in c.metadata.get("tags", [])]
    assert boxes == [3]
    text = nb.cells[3].source
    assert text.startswith(":::{dropdown} Parameters of this page\n")
    assert "| `T` | `8` |" in text and "| `models` | `[a, b]` |" in text
    assert "{download}`p-student.ipynb </_static/student/p-student.ipynb>`" in text
    plain = nbformat.v4.new_notebook()
    plain.cells = [nbformat.v4.new_markdown_cell("(x)=\n# Title"), nbformat.v4.new_code_cell("1")]
    build_book.insert_parameter_box(plain, {}, "/_static/student/x-student.ipynb")
    assert "parameter-box" in plain.cells[1].metadata["tags"] and "| (none) |" in plain.cells[1].source


def _exercise_notebook():
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        md("# Page"), code("T = 4", metadata={"tags": ["parameters"]}), code("x = T * 2"),
        md("## Exercises\n\n```{admonition} Exercise 1: double it\n:class: tip\nCompute 2x.\n```"),
        code("y = 2 * x", metadata={"tags": ["hide-cell"]}), code("glue('y', y)"),
        md(":::{dropdown} Solution 1\nIt is {glue:text}`y`.\n:::"),
        md("```{admonition} Exercise 2: no code\n:class: tip\nThink.\n```\n\n:::{dropdown} Solution 2\nYes.\n:::\n\nAfter."),
        code("secret = 42", metadata={"tags": ["solution"]}), code("more = 1", metadata={"tags": ["solution"]}),
        md("answer", metadata={"tags": ["solution"]}),
        md("```{admonition} Exercise 3: tagged\n:class: tip\nDo.\n```"),
        code("tagged = 3", metadata={"tags": ["hide-cell", "solution"]}),
        md("## What you learned\n\n* things"), code("z = 1"),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="out")]
    return nb


def test_student_notebook_strips_solutions_and_keeps_the_rest():
    student = build_book.student_notebook(_exercise_notebook(), {"T": 8})
    sources = [c.source for c in student.cells]
    joined = "\n".join(sources)
    for gone in ("Solution", "secret", "more = 1", "answer", "2 * x", "tagged = 3"):
        assert gone not in joined
    # one placeholder right after each exercise with code, one for the run of `solution` cells
    after = [sources[i - 1] for i, s in enumerate(sources) if s.endswith("your code here")]
    assert len(after) == 3
    assert "Exercise 1" in after[0] and "Exercise 2" in after[1] and "Exercise 3" in after[2]
    assert "Exercise 2: no code" in joined and "After." in joined and "z = 1" in joined and "x = T * 2" in joined
    # one parameter cell, with the value in use (papermill's injected cell merged into it)
    params = [c for c in student.cells if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
    assert len(params) == 1 and "T = 8" in params[0].source
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


STYLER_HTML = """<style type="text/css"></style>
<table id="T_x" class="dataframe"><thead><tr><th class="col_heading">model</th><th>layer</th>
<th>score | CI</th></tr></thead><tbody><tr><td>toy-gpt2</td><td>2</td><td>3.1 [2.0, 4.5]</td></tr>
<tr><td>random-llama</td><td>&ndash;</td><td>1.0</td></tr></tbody></table>"""


def test_html_table_becomes_a_markdown_table():
    md = build_book.html_table_to_markdown(STYLER_HTML)
    assert md.splitlines() == [
        "| model | layer | score \\| CI |", "| --- | --- | --- |",
        "| toy-gpt2 | 2 | 3.1 [2.0, 4.5] |", "| random-llama | \u2013 | 1.0 |",
    ]
    assert build_book.html_table_to_markdown("<p>no table</p>") is None


def test_caption_tables_numbers_a_table_cell_and_hides_its_raw_output(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("df", metadata={"table": {"name": "tbl-x", "caption": "Scores\nper model."}})
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/html": STYLER_HTML, "text/plain": "df"})]
    nb.cells = [cell, nbformat.v4.new_markdown_cell("See {numref}`tbl-x`.")]
    build_book.caption_tables(nb)
    assert "remove-output" in nb.cells[0].metadata["tags"]
    table = nb.cells[1].source
    assert table.startswith(":::{table} Scores per model.\n:name: tbl-x\n| model |") and table.endswith("\n:::")
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    build_book.localise_labels(path, "model-a")  # a template page renames its table labels too
    out = nbformat.read(path, as_version=4)
    assert ":name: tbl-x-model-a" in out.cells[1].source and "{numref}`tbl-x-model-a`" in out.cells[2].source
    bad = nbformat.v4.new_notebook()
    bad.cells = [nbformat.v4.new_code_cell("1", metadata={"table": {"name": "tbl-y", "caption": "c"}})]
    with pytest.raises(build_book.BuildError, match="tbl-y"):
        build_book.caption_tables(bad)


def test_caption_tables_keeps_the_tables_own_caption():
    """The setting ``styled`` puts in a Styler's caption survives into the numbered table's title."""
    import pandas as pd

    from residual_response.pages.tables import styled

    html = styled(pd.DataFrame({"model": ["a", "b"], "score": [1.0, 2.0], "setting": ["T = 20, 4 seeds"] * 2}),
                  uuid="x").to_html()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("df", metadata={"table": {"name": "tbl-s", "caption": "Scores."}})
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/html": html, "text/plain": "df"})]
    nb.cells = [cell]
    build_book.caption_tables(nb)
    assert nb.cells[1].source.startswith(":::{table} Scores. Setting: T = 20, 4 seeds.\n")


def test_course_table_lists_pages_exercises_and_measured_times():
    pages = build_book.load_pages("ci")
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    emergence = next(p for p in pages if p.name == "emergence")
    table = build_book.course_table(toc, pages, [build_book.Result(emergence, 12.3)])
    rows = [l for l in table.splitlines() if l.startswith("| ")]
    em = next(r for r in rows if "emergence" in r)
    assert em.startswith("| {doc}`emergence` |") and em.endswith("| 12 s |")
    for title in build_book.exercise_titles(emergence.source):
        assert title.replace("|", "\\|") in em
    assert any(r.endswith("| not run in this build |") for r in rows)
    assert ":name: tbl-course-pages" in table and "logical cores" in table
    assert "None" not in table and "nan" not in table


def test_student_times_table_is_read_from_the_committed_record_per_session():
    from book_build.stage import COURSE_SESSIONS, STUDENT_TIMES, student_times_table

    record = {"machine": "CPU X, 2 logical cores, Linux", "date": "December 2026", "load": 1.5,
              "notebooks": {"schematic-student": {"stubs empty": 17.1, "stubs filled": 13.1},
                            "universal-response-student": {"stubs empty": 66.3, "stubs filled": 45.1}}}
    table = student_times_table(record)
    rows = [l for l in table.splitlines() if l.startswith("| ")]
    assert "| 1 | {doc}`schematic` | 17 s | 13 s |" in rows
    assert "| 1 | *the session* | *1.4 min* | |" in rows  # the larger run of each notebook: 17.1 + 66.3 s
    assert "| 2 | {doc}`emergence` | not measured | no stubs |" in rows
    assert "CPU X, 2 logical cores" in table and "load average up to 1.5" in table
    # the sentence under the table quotes the sessions' totals (only session 1 is measured here)
    assert table.endswith("each session's notebooks compute for 1.4 min in all, of its two hours.")
    # every session's pages exist, and the committed record names only real notebooks
    names = {p.name for p in build_book.load_pages("ci")}
    assert {p for pages in COURSE_SESSIONS.values() for p in pages} <= names
    committed = __import__("json").loads(STUDENT_TIMES.read_text())
    assert {n.removesuffix("-student") for n in committed["notebooks"]} <= names
    assert {"machine", "date", "load"} <= set(committed)


# ---------------------------------------------------------------------------------------
# The book's shared vocabulary: glossary terms and citation keys the pages refer to
# ---------------------------------------------------------------------------------------

def _book_sources():
    return sorted((REPO / "book").glob("*.md")) + sorted((REPO / "notebooks").glob("*.md"))


def _glossary_terms():
    import re

    text = (REPO / "book" / "notation.md").read_text()
    block = re.search(r"```\{glossary\}\n(.*?)\n```", text, re.S).group(1)
    return {line.strip().lower() for line in block.splitlines() if line and not line.startswith(" ")}


def test_every_term_and_citation_used_is_defined():
    import re

    terms = _glossary_terms()
    keys = set(re.findall(r"^@\w+\{([^,]+),", (REPO / "book" / "references.bib").read_text(), re.M))
    missing = []
    for path in _book_sources():
        text = path.read_text()
        for m in re.finditer(r"\{term\}`([^`]+)`", text):
            target = m.group(1).split("<")[-1].rstrip(">").strip().lower()
            if target not in terms:
                missing.append(f"{path.name}: term {m.group(1)!r}")
        for m in re.finditer(r"\{cite(?::[pt])?\}`([^`]+)`", text):
            missing += [f"{path.name}: citation {k!r}" for k in m.group(1).split(",") if k.strip() not in keys]
    assert not missing, "undefined: " + "; ".join(missing)
    assert {"luick2024universal", "olsson2022incontext", "elhage2021mathematical", "allal2025smollm2",
            "gemma2025gemma3", "nanda2022transformerlens"} <= keys
    assert {"residual stream", "layer", "block", "kick", "response", "universal regime", "rounding floor", "jvp",
            "response matrix", "induction stripe", "duplicate-token stripe", "induction score", "emergence layer",
            "section map", "null control"} <= terms


def test_a_rejected_value_stops_the_run_with_the_pages_sentence(tmp_path):
    """End to end through papermill and a kernel: the page's ValueError becomes one UsageError line."""
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [md("# P"), code("eps = 0.01", metadata={"tags": ["parameters"]}),
                code("if eps <= 0:\n    raise ValueError(f'eps must be > 0, got {eps}')"), md("## Results"), code("1")]
    src = tmp_path / "p.ipynb"
    nbformat.write(nb, src)
    stage = tmp_path / "stage"
    stage.mkdir()
    page = _page("p", eps=-1.0)
    with pytest.raises(build_book.UsageError) as err:
        build_book.execute(page, src, stage)
    assert str(err.value) == "page 'p': eps must be > 0, got -1.0"
    page.params = {"eps": 0.5}
    result = build_book.execute(page, src, stage)
    assert result.error is None and (stage / "p.ipynb").is_file()


# ---------------------------------------------------------------------------------------
# --out: checked before anything runs, left as it was found by a refused or interrupted build
# ---------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (``None`` for folders)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("how", ["refused", "interrupted"])
@pytest.mark.parametrize("earlier", [True, False])
def test_a_refused_or_interrupted_rerun_leaves_out_as_it_found_it(tmp_path, monkeypatch, capsys, how, earlier):
    """The page's refusal (a parameter check) is only known once the page runs, after src/ and stage/ exist."""
    build_execute = importlib.import_module("book_build.execute")  # the module (the package exports its function)

    out = tmp_path / "rerun"
    if earlier:  # a previous build's entries, and a file of the user's
        for name, text in (("stage/emergence.ipynb", "old page"), ("src/emergence.ipynb", "old source"),
                           ("timings.json", "{}"), ("notes.txt", "mine")):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text)
    before = _tree(out) if earlier else None

    def refuse(page, source_ipynb, stage):
        assert (out / "src").is_dir() and (out / "stage").is_dir()  # the build had written them
        (stage / f"{page.name}.ipynb").write_text("half-run notebook")
        if how == "refused":
            raise build_book.UsageError(f"page {page.name!r}: T must be >= 2, got 1")
        raise KeyboardInterrupt

    monkeypatch.setattr(build_execute, "execute", refuse)  # what the page runner calls
    rc = build_book.main(["--profile", "ci", "--only", "emergence", "--param", "T=1", "--out", str(out)])
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert rc == (2 if how == "refused" else 130) and len(err) == 1 and err[0].startswith("error: "), err
    if earlier:
        assert _tree(out) == before
    else:
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["rerun"] if earlier else [])


@pytest.mark.parametrize("where", ["a file", "under a file", "/proc"])
def test_out_that_cannot_be_a_folder_is_one_error_line(tmp_path, capsys, where):
    (tmp_path / "afile").write_text("x")
    out = {"a file": tmp_path / "afile", "under a file": tmp_path / "afile" / "sub", "/proc": Path("/proc/rr-x")}[where]
    rc = build_book.main(["--profile", "ci", "--only", "emergence", "--out", str(out)])
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "--out" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] and (tmp_path / "afile").read_text() == "x"


def test_a_build_under_an_address_space_limit_stops_in_one_line(tmp_path):
    """vl-convert's V8 aborts under ulimit -v (status 133): the build says so before any page runs."""
    import resource
    import subprocess
    import sys

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (8_000_000_000, 8_000_000_000))

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "build_book.py"), "--profile", "ci", "--only",
                           "emergence", "--out", str(out)], capture_output=True, text=True, preexec_fn=cap, timeout=600)
    err = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(err) == 1 and "address-space limit" in err[0], proc.stderr
    assert not out.exists()


def test_build_noise_leaves_the_page_and_the_rest_of_stderr_stays():
    from book_build.execute import drop_build_noise

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="waiting for the cache entry /x/.locks/a held by "
                                           "pid 563 (up to 600 s; RESIDUAL_RESPONSE_LOCK_TIMEOUT sets the bound)\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="waiting for the cache entry /y held by pid 1 (x)\n"
                                           "UserWarning: something the reader should see\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="waiting for the cache entry is not noise here\n")]
    nb.cells = [cell]
    assert drop_build_noise(nb) == 2
    assert [o["text"] for o in cell.outputs] == ["UserWarning: something the reader should see\n",
                                                 "waiting for the cache entry is not noise here\n"]
