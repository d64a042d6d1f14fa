"""Solutions of build-it-yourself steps that more than one test module runs (the checks of
``residual_response.exercises`` and the use-it cells of ``residual_response.pages.use_it``):
written once, as a student would, from the library's public pieces."""

from residual_response.ablation import ablate_heads
from residual_response.attention import attention_patterns
from residual_response.sequences import induction_layout
from residual_response.streams import clean_streams


def head_induction_attention(lm, tokens, block, head, T):
    """Build it yourself 5: a head's mean attention from each induction target to its source."""
    layout = induction_layout(lm, T)
    return float(attention_patterns(lm, tokens)[block, head][layout.induction_targets, layout.induction_sources].mean())


def mean_ablated_streams(lm, tokens, block, head, means):
    """Build it yourself 6: the clean streams with one head mean-ablated."""
    with ablate_heads(lm, [(block, head)], means=means):
        return clean_streams(lm, tokens)
