"""Ten decoder architectures, each as a tiny random model: the engine, the measurements beside it,
and the command line on a checkpoint folder.

For each of GPT-2, Llama, Gemma 2, Gemma 3, Qwen2, Mistral, Phi-3, GPT-NeoX, OPT and Falcon:

* its blocks are found (a known path, and the same list by looking, :mod:`residual_response.models.blocks`);
* the response is causal exactly and equals the naive hooked loop of ``tests/reference.py``
  (rel. diff < 1e-4), perturbing the embeddings and a later stream (the blocks before it skipped);
* the attention patterns, a head's ablation and the head attribution run (their hooks find the
  attention of every block);
* ``residual-response induction --model FOLDER`` runs on its ``save_pretrained`` checkpoint with
  an offline word-level tokenizer (built with ``tokenizers``), exit status 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reference import rel_diff_from_naive

from residual_response.cli import main
from residual_response.engine import response
from residual_response.models import build_random_model
from residual_response.models.blocks import BLOCK_PATHS, _find_block_path
from residual_response.sequences import make_sequence

VOCAB = 96
COMMON = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
ROPE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=64)


def _config(family: str):
    """A tiny config of each architecture: 3 blocks, width 32, 4 heads (2 key-value heads where there are any)."""
    import transformers as tf

    if family == "gpt2":
        return tf.GPT2Config(n_layer=3, n_embd=32, n_head=4, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
                             attn_pdrop=0.0, **COMMON)
    if family == "llama":
        return tf.LlamaConfig(**ROPE, **COMMON)
    if family == "gemma2":
        return tf.Gemma2Config(**ROPE, head_dim=8, sliding_window=16, query_pre_attn_scalar=8, **COMMON)
    if family == "gemma3":
        return tf.Gemma3TextConfig(**ROPE, head_dim=8, sliding_window=16, query_pre_attn_scalar=8,
                                   layer_types=["sliding_attention", "sliding_attention", "full_attention"], **COMMON)
    if family == "qwen2":
        return tf.Qwen2Config(**ROPE, **COMMON)
    if family == "mistral":
        return tf.MistralConfig(**ROPE, sliding_window=None, **COMMON)
    if family == "phi3":
        return tf.Phi3Config(**ROPE, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0, **COMMON)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                                max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0, **COMMON)
    if family == "opt":
        return tf.OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=3, num_attention_heads=4,
                            max_position_embeddings=64, word_embed_proj_dim=32, dropout=0.0, attention_dropout=0.0,
                            **COMMON)
    if family == "falcon":
        return tf.FalconConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, new_decoder_architecture=False,
                               multi_query=True, parallel_attn=False, bias=False, alibi=False,
                               max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0, **COMMON)
    raise ValueError(family)


FAMILIES = ("gpt2", "llama", "gemma2", "gemma3", "qwen2", "mistral", "phi3", "gpt_neox", "opt", "falcon")


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request):
    return build_random_model(request.param, seed=0, config=_config(request.param))


def test_the_blocks_are_found_by_path_and_by_looking(tiny):
    path = BLOCK_PATHS[tiny.config.model_type]
    assert _find_block_path(tiny.model) == path  # the generic finder agrees with the known path
    assert len(tiny.blocks) == tiny.n_layers == 3


def test_response_is_causal_and_equals_the_naive_loop(tiny):
    tokens = make_sequence(tiny, "repeated", 4, seed=0)
    N = len(tokens)
    for l0 in (0, 1):
        res = response(tiny, tokens, [1e-2], l0=l0, n_directions=2, seed=3)
        lower = np.tril(np.ones((N, N), bool), k=-1)
        assert np.all(res.chi[..., lower] == 0.0), f"l0={l0}: a target before its source moved"
        rel = rel_diff_from_naive(tiny, tokens, l0, seed=3)
        assert rel < 1e-4, f"{tiny.family} l0={l0}: max rel diff {rel:.2e} from the naive loop (tolerance 1e-4)"


def test_attention_ablation_and_head_attribution_run(tiny):
    from residual_response.ablation import ablate_heads
    from residual_response.attention import attention_patterns
    from residual_response.heads import head_attribution

    tokens = make_sequence(tiny, "repeated", 4, seed=1)
    pat = attention_patterns(tiny, tokens)  # [L, H, N, N]
    assert pat.shape == (3, 4, len(tokens), len(tokens))
    torch.testing.assert_close(pat.sum(-1), torch.ones(pat.shape[:-1]), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        clean = tiny.base_model(input_ids=tokens[None]).last_hidden_state
        with ablate_heads(tiny, [(1, 0)], mode="zero"):
            ablated = tiny.base_model(input_ids=tokens[None]).last_hidden_state
    assert not torch.allclose(clean, ablated)  # the head's slice of the output projection was found
    attribution = head_attribution(tiny, T=4, seeds=1, n_boot=20)
    assert attribution.score.shape == (3, 4) and np.isfinite(attribution.score).all()


def _word_tokenizer(folder):
    """An offline word-level tokenizer of the tiny vocabulary, saved beside the weights."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, VOCAB)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>").save_pretrained(folder)


def test_the_command_line_runs_on_a_checkpoint_folder(tiny, tmp_path, capsys):
    from residual_response.models import quiet_hf_progress

    folder = tmp_path / tiny.config.model_type
    with quiet_hf_progress():
        tiny.model.save_pretrained(folder)
    _word_tokenizer(folder)
    out = tmp_path / "ind.json"
    rc = main(["induction", "--model", str(folder), "--length", "4", "--seeds", "1", "--layer", "1", "--out", str(out),
               "--quiet"])
    assert rc == 0, capsys.readouterr().err
    d = json.loads(out.read_text())
    assert d["l0"] == 1 and d["read_streams"] == [1, 2, 3] and d["seeds"] == [0]


def test_a_model_without_a_block_list_is_refused_in_one_line(tmp_path, capsys):
    """An architecture the method cannot use: one line naming its class and what is missing, exit 2."""
    import transformers as tf

    from residual_response.models import wrap_model
    from residual_response.models.blocks import UnsupportedModelError

    class Flat(torch.nn.Module):  # a "causal LM" whose blocks are not a list of modules
        config = tf.GPT2Config(n_layer=2)

        def forward(self, input_ids):
            return input_ids

    with pytest.raises(UnsupportedModelError, match="unsupported model class Flat: no block list found"):
        wrap_model("flat", Flat())


def test_the_cost_model_counts_the_weights_of_every_architecture(tiny):
    """The one cost model's count (residual_response.cost) from the config's widths equals the 2-D
    weights of a block, fused projections (Phi-3, Falcon, GPT-NeoX) and plain MLPs included."""
    from residual_response.cost import block_weights, matmul_weights, model_dims

    d = model_dims(tiny)
    assert block_weights(tiny) == matmul_weights(d["d_model"], d["d_ffn"], d["q_dim"], d["kv_dim"], d["gated"])
    assert d["gated"] == (tiny.config.model_type not in ("gpt2", "gpt_neox", "opt", "falcon"))
