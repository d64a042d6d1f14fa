"""Build-it-yourself exercises: a check for each function a student writes along the course.

The book's pages hand out six functions to write, and seven smaller steps between them, each as
a stub with a typed signature and a docstring (shapes included); the page shows a solution, and
the check below runs the student's function on small cases (tiny random-initialised models from
:func:`~residual_response.models.build_random_model`, or seeded synthetic arrays for the steps)
and compares it with the library's own result at a stated tolerance::

    from residual_response.exercises import check_chi_one_source
    check_chi_one_source(chi_one_source)   # prints one line, returns True or False

The bootstrap's check (4) compares properties, not draws: the score, an interval that contains
it, ends within a stated share of the library's width at many replicates, one interval per seed;
so a student may draw in any order.

After a check, a page's "Use it" cell puts the student's function to work on the trained toy
model beside the library (:mod:`residual_response.pages.use_it`), through
:func:`.harness.apply_student`, which prints the same one line for a stub still empty.

A check prints ``✓ name: ...`` when every case agrees, ``name: not implemented yet`` when the
function still raises ``NotImplementedError``, and otherwise one sentence that says what differs,
with the expected and received shape or value (:mod:`.harness`).

1. the kick and chi of one source: :func:`check_chi_one_source` (schematic page);
2. the JVP, and the plateau against it: :func:`check_chi_jvp` (universal-response page);
3. the twin-baseline score of a stream: :func:`check_twin_score` (emergence page);
4. the two-level bootstrap: :func:`check_bootstrap_score` (null-calibration page);
5. the attention score of one head: :func:`check_head_attention_score` (cross-checks page);
6. the mean ablation of one head: :func:`check_mean_ablation` (cross-checks page).

The smaller steps (5-15 minutes each, :mod:`.steps`) read one number off arrays the library
computes, and carry the number of the exercise before them in the book, with a letter:

- 1b: where the induction stripe lies: :func:`check_induction_stripe` (schematic page);
- 2b: the regime window of one curve: :func:`check_regime_window` (universal-response page);
- 2c: the stripe of repeated sequences over their twins: :func:`check_stripe_ratio` (response-matrices page);
- 3b: the stream half way up the rise: :func:`check_half_rise` (emergence page);
- 4b: the coverage of 1 by the intervals: :func:`check_coverage` (null-calibration page);
- 4c: the blocks that write a stripe: :func:`check_writing_blocks` (model-sections page);
- 6b: the permutation p-value of an ablation: :func:`check_permutation_p_value` (cross-checks page).

The numbers are the pages' own ("Build it yourself 1" ... "6", "1b" ... "6b"), in the order of the book.
"""

from .heads import check_head_attention_score, check_mean_ablation
from .kick import check_chi_jvp, check_chi_one_source
from .score import check_bootstrap_score, check_twin_score
from .steps import (check_coverage, check_half_rise, check_induction_stripe, check_permutation_p_value,
                    check_regime_window, check_stripe_ratio, check_writing_blocks)

__all__ = ["check_chi_one_source", "check_chi_jvp", "check_twin_score", "check_bootstrap_score",
           "check_head_attention_score", "check_mean_ablation", "check_induction_stripe", "check_regime_window",
           "check_stripe_ratio", "check_half_rise", "check_coverage", "check_writing_blocks", "check_permutation_p_value"]
