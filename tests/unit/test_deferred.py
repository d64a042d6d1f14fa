"""The page layer puts off rfc3987_syntax's IRI grammar (residual_response.pages.deferred): a page
kernel starts without compiling it, and jsonschema's IRI check still answers as before."""

import importlib.util
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("rfc3987_syntax") is None,
                                reason="rfc3987_syntax is not installed: nothing to put off")

PROBE = """
import sys
import residual_response.page
import jsonschema
print("compiled at import:", "rfc3987_syntax.syntax_helpers" in sys.modules)
check = jsonschema.Draft202012Validator.FORMAT_CHECKER
print("iri:", check.conforms("http://example.org/ä", "iri"), check.conforms("no iri, spaces", "iri"))
print("compiled after use:", "rfc3987_syntax.syntax_helpers" in sys.modules)
import rfc3987_syntax
print("real module:", rfc3987_syntax.is_valid_syntax_iri("http://example.org/"))
"""


def test_the_grammar_waits_for_its_first_use_and_the_check_is_unchanged():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["compiled at import: False", "iri: True False", "compiled after use: True", "real module: True"], out
