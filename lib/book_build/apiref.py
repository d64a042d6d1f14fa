"""The library reference's Sphinx extension: links from the pages to it, and the docstrings as written.

``book/api.md`` documents the library with ``automodule`` (autodoc and napoleon, offline). This
extension (``_config.yml`` lists it as ``book_build.apiref``) does four things around it:

* **first mentions**: on every other page, the first inline code that names a documented
  function, class or module (``induction_scores``, ``crosscheck.kind_scores``,
  ``response(..., method="jvp")``, ``residual_response.stats``) becomes a link to its entry;
  later mentions on the same page stay plain code. The names come from :func:`api_names`.
* **references written loosely**: a docstring's ``:func:`models.load_model``` or
  ``:func:`model_names``` that Sphinx cannot place is resolved by its dotted suffix among the
  documented objects, when exactly one of them ends so (Sphinx itself does this only for names
  that begin with a dot).
* **attribute comments as written**: napoleon reads the first line of a ``#:`` comment on a
  constant as ``type: description`` whenever it holds a colon; those comments are prose, so they
  are kept as they are.
* **no deprecated aliases**: the old names of renamed fields (``layer`` for ``l0``,
  ``read_layers`` for ``read_streams``, ...) are left out of the reference.

:func:`api_names` also serves the student notebooks (:mod:`.markdown`), which link the same
first mentions to the HTML reference.
"""

from __future__ import annotations

import importlib
import inspect
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import BOOK

__all__ = ["API_PAGE", "api_modules", "api_names", "link_target", "setup"]

#: the reference page (``book/api.md``)
API_PAGE = "api"

AUTOMODULE_RE = re.compile(r"^\.\. automodule:: (?P<module>[\w.]+)[ \t]*\n(?P<options>(?:[ \t]+:[\w-]+:.*\n)*)", re.M)

#: inline code that may name an API object: ``name``, ``module.name``, either followed by ``(...)``
MENTION_RE = re.compile(r"^(?P<dotted>[A-Za-z_][\w.]*?)(?:\(.*\))?$", re.S)

#: packages whose ``__all__`` re-exports documented objects under other names (``response``)
ALIAS_PACKAGES = ("residual_response", "residual_response.engine", "residual_response.models",
                  "residual_response.exercises")


def api_modules(page: Path = BOOK / f"{API_PAGE}.md") -> list[tuple[str, list[str] | None]]:
    """``[(module, members)]`` in the order ``book/api.md`` documents them.

    ``members`` is the module's ``__all__`` for ``:members:``, the names listed after ``:members:``
    where it lists some (less those after ``:exclude-members:``, documented under another module), and
    ``None`` for a module documented by its docstring alone.
    """
    text = page.read_text() if page.is_file() else ""
    out = []
    for m in AUTOMODULE_RE.finditer(text):
        option = re.search(r":members:(.*)", m.group("options"))
        if option is None:
            out.append((m.group("module"), None))
        elif option.group(1).strip():
            out.append((m.group("module"), [n.strip() for n in option.group(1).split(",") if n.strip()]))
        else:
            excluded = re.search(r":exclude-members:(.*)", m.group("options"))
            skip = {n.strip() for n in excluded.group(1).split(",")} if excluded else set()
            members = getattr(importlib.import_module(m.group("module")), "__all__", [])
            out.append((m.group("module"), [n for n in members if n not in skip]))
    return out


@lru_cache(maxsize=4)
def api_names(page: Path = BOOK / f"{API_PAGE}.md") -> dict[str, tuple[str, str]]:
    """``{name: (role, full name)}`` of every object the reference documents, under each name it is mentioned by.

    A function or class ``f`` of module ``residual_response.a.b`` is found as ``f``, ``b.f`` and
    ``a.b.f`` (the role is ``func`` or ``class``); a documented module as its full name. A name that
    two documented objects share (a short name in two modules) is left out of the short form, and an
    alias of a documented object points at its entry.
    """
    full: dict[int, tuple[str, str]] = {}
    names: dict[str, tuple[str, str]] = {}
    clashes: set[str] = set()

    def add(key: str, value: tuple[str, str]) -> None:
        if key in names and names[key] != value:
            clashes.add(key)
        names.setdefault(key, value)

    reexports: list[tuple[str, str, object]] = []
    for module_name, members in api_modules(page):
        module = importlib.import_module(module_name)
        add(module_name, ("mod", module_name))
        for name in members or []:
            obj = getattr(module, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if not obj.__module__.startswith(module_name):
                reexports.append((module_name, name, obj))  # documented where it is defined
                continue
            value = ("class" if inspect.isclass(obj) else "func", f"{module_name}.{name}")
            full.setdefault(id(obj), value)
            parts = module_name.split(".")[1:] + [name]
            for i in range(len(parts)):
                add(".".join(parts[i:]), value)
    for module_name, name, obj in reexports:  # ``crosscheck.ablation_study`` finds the entry of its home module
        value = full.get(id(obj))
        if value is not None:
            parts = module_name.split(".")[1:] + [name]
            for i in range(len(parts) - 1):
                add(".".join(parts[i:]), value)
    for package in ALIAS_PACKAGES:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", []):
            value = full.get(id(getattr(module, name, None)))
            if value is not None and name not in names:  # a documented name keeps its own entry
                names[name] = value
    return {k: v for k, v in names.items() if k not in clashes}


def link_target(code: str, names: dict[str, tuple[str, str]] | None = None) -> tuple[str, str] | None:
    """``(role, full name)`` of the API object an inline code names, or ``None``."""
    names = api_names() if names is None else names
    m = MENTION_RE.match(code.strip())
    if not m:
        return None
    dotted = m.group("dotted").removeprefix("residual_response.")
    hit = names.get(dotted) or names.get(f"residual_response.{dotted}")
    if hit is None or (hit[0] == "mod" and not code.strip().startswith("residual_response.")):
        return None  # a bare module name (``stats``) is too often something else
    return hit


# --------------------------------------------------------------------------------------------
# Sphinx
# --------------------------------------------------------------------------------------------


def _first_mentions(app: Any, doctree: Any) -> None:
    """Wrap the first inline code naming each API object of a page in a reference to it."""
    from docutils import nodes
    from sphinx import addnodes

    docname = app.env.docname
    if docname == API_PAGE:
        return
    names = api_names(Path(app.srcdir) / f"{API_PAGE}.md")
    seen: set[str] = set()
    for node in list(doctree.findall(nodes.literal)):
        if node.get("classes") and "xref" in node["classes"]:
            continue
        parent = node.parent
        if isinstance(parent, (nodes.reference, addnodes.pending_xref, nodes.title, addnodes.desc_signature)):
            continue
        target = link_target(node.astext(), names)
        if target is None or target[1] in seen:
            continue
        seen.add(target[1])
        role, fullname = target
        xref = addnodes.pending_xref("", refdomain="py", reftype="mod" if role == "mod" else "obj",
                                     reftarget=fullname, refexplicit=True, refwarn=True, refdoc=docname)
        xref["py:module"] = None
        xref["py:class"] = None
        literal = node.deepcopy()
        literal["classes"] = list(literal.get("classes", [])) + ["xref", "api-link"]
        xref += literal
        parent.replace(node, xref)


def _suffix_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a Python reference Sphinx could not place by its unique dotted suffix.

    A reference to something of the library that the reference page does not document (a
    constant without a docstring, a private helper, the page layer) stays plain code, unlinked.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip(".~")
    if not target or target.startswith(("torch.", "np.", "numpy.")):
        return None
    domain = env.get_domain("py")
    found = [name for name in domain.objects if name == target or name.endswith("." + target)]
    if len(found) > 1:  # one object documented under two names: take the shorter (the package's)
        last = {f.rsplit(".", 1)[-1] for f in found}
        found = sorted(found, key=len)[:1] if len(last) == 1 else found
    if len(found) == 1:
        from sphinx.util.nodes import make_refnode

        obj = domain.objects[found[0]]
        return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, found[0])
    return contnode if _library_has(target, node.get("py:module"), node.get("py:class")) else None


def _library_has(target: str, module: str | None, cls: str | None = None) -> bool:
    """Whether ``target`` names something of ``residual_response`` (seen from ``module`` and ``cls``)."""
    import sys

    parts = target.split(".")
    if parts[0] != "residual_response" and _spec_exists(f"residual_response.{target}"):
        return True  # a module of the package named relative to it (``.cli.estimate``), imported or not
    if parts[0] == "residual_response":  # a module of the package (imported or not), or a name in one
        return any(_spec_exists(".".join(parts[:i])) for i in range(len(parts), 1, -1))
    roots = [m for m in sys.modules if m == "residual_response" or m.startswith("residual_response.")]
    starts = ([f"{module}.{cls}", module] if module and cls else [module] if module else []) + roots
    for root in starts:
        obj: Any = sys.modules.get(root.rsplit(".", 1)[0]) if root == f"{module}.{cls}" else sys.modules.get(root)
        if root == f"{module}.{cls}":
            obj = getattr(obj, str(cls), None)
        for part in parts:
            obj = getattr(obj, part, None)
            if obj is None:
                break
        else:
            return True
    return False


def _spec_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


_KEPT: dict[str, list[str]] = {}


#: ``:ivar a, b: text`` as napoleon writes an "Attributes:" line that names several fields
IVAR_RE = re.compile(r"^(?P<pre>\s*:ivar )(?P<names>[^:]*\s[^:]*)(?P<post>:.*)$")


def _keep_comment(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what in ("data", "attribute", "property"):
        _KEPT[name] = list(lines)


def _restore_comment(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Undo napoleon on constants' comments; keep "a, b: text" attribute lines one field.

    Sphinx reads ``:ivar a, b:`` as a field of type ``a,`` named ``b``; with the names joined by a
    zero-width space they stay one name, and read as written.
    """
    if what in ("data", "attribute", "property") and name in _KEPT:
        lines[:] = _KEPT.pop(name)
        return
    for i, line in enumerate(lines):
        m = IVAR_RE.match(line)
        if m:
            names = re.sub(r"\s*([,/])\s*", "\\1\u200b", m.group("names").strip())
            lines[i] = f"{m.group('pre')}{names}{m.group('post')}"


def _skip_renamed(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """Leave out the old names of renamed fields (:func:`residual_response.resultfile.renamed`):
    deprecated aliases, not part of the reference; their targets are the fields themselves."""
    if isinstance(obj, property) and (obj.__doc__ or "").startswith("Old name of"):
        return True
    return None


def setup(app: Any) -> dict:
    app.connect("autodoc-skip-member", _skip_renamed)
    app.connect("autodoc-process-docstring", _keep_comment, priority=400)  # napoleon runs at 500
    app.connect("autodoc-process-docstring", _restore_comment, priority=600)
    app.connect("doctree-read", _first_mentions)
    app.connect("missing-reference", _suffix_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
