"""Any transformers model is audited without wrap(): tiny random models of six architectures."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import transformers as tf

import pytest_attnfaith as af
from pytest_attnfaith.adapters import Edit, prepare_batch
from pytest_attnfaith.adapters.huggingface import HuggingFaceModel
from pytest_attnfaith.options import resolve_options
from tests.huggingface.conftest import ARCHITECTURES, DECODERS, build, token_batch

FAST = {"permutations": 10, "adversarial_steps": 20}


def native_distribution(model: tf.PreTrainedModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's own output under its own attention implementation (sdpa / eager), in eval mode."""
    with torch.no_grad():
        logits = copy.deepcopy(model).eval()(**inputs).logits.double()
    if logits.dim() == 3:
        last = inputs["attention_mask"].sum(dim=1) - 1
        logits = logits[torch.arange(logits.shape[0]), last]
    return torch.softmax(logits, dim=-1)


def session_forward(model: tf.PreTrainedModel, inputs: dict[str, torch.Tensor], edit: Edit | None = None, **options: object):
    """One pass through the adapter in full (no shortcut)."""
    adapter = HuggingFaceModel(model, shortcuts=False)
    batch = prepare_batch(inputs)
    with adapter.session(resolve_options(**options)):
        return adapter, adapter.forward(batch, edit)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_audit_runs_on_a_plain_pretrained_model(tiny, batch, name):
    report = af.audit(tiny[name], batch, **FAST)
    assert set(report.checks) == set(af.CHECK_NAMES)
    assert report.model["adapter"] == "huggingface"
    assert report.model["layers"] == 2 and report.model["layer"] == 1 and report.model["heads"] == 4
    sink = 1 if report.model["sink"]["excluded"] else 0  # decoders: the first token is left out (sink="auto")
    assert len(report.instances["attention"][0]) == int(batch["attention_mask"][0].sum()) - sink


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_output_under_the_audit_equals_the_models_own_output(tiny, batch, name):
    """Padding and causal masks reach the eager attention (AttentionMaskInterface entry registered)."""
    _, forward = session_forward(tiny[name], batch)
    assert torch.allclose(forward.probs, native_distribution(tiny[name], batch), atol=1e-5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_writing_back_the_read_rows_leaves_the_output_unchanged(tiny, batch, name):
    """The output recomputed from the (replaced) weights equals the model's: values and GQA heads handled."""
    _, forward = session_forward(tiny[name], batch, Edit(lambda rows, real: rows.clone()))
    assert torch.allclose(forward.probs, native_distribution(tiny[name], batch), atol=1e-5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_replacing_the_attention_changes_the_output(tiny, batch, name):
    one_hot = torch.zeros(batch["input_ids"].shape)
    one_hot[:, 0] = 1.0
    edit = Edit(lambda rows, real, weights: weights.unsqueeze(1).expand_as(rows), {"weights": one_hot})
    _, forward = session_forward(tiny[name], batch, edit)
    assert (forward.probs - native_distribution(tiny[name], batch)).abs().max() > 1e-6  # rounding noise: < 1e-8


def test_llama_reads_every_query_head_of_grouped_query_attention(tiny, batch):
    adapter, forward = session_forward(tiny["llama"], batch)
    assert tiny["llama"].config.num_key_value_heads == 2
    assert forward.rows.shape[1] == 4 and adapter.head_count(0) == 4


@pytest.mark.parametrize("name", DECODERS)
def test_decoders_read_the_last_real_token_and_keep_their_causal_mask(tiny, batch, name):
    adapter, forward = session_forward(tiny[name], batch)
    assert adapter.describe()["query"] == "last real token"
    first = session_forward(tiny[name], batch, query=0)[1]
    assert torch.allclose(first.rows[:, :, 0], torch.ones(1)), "token 0 of a causal model attends only to itself"
    last = batch["attention_mask"].sum(dim=1) - 1
    assert torch.equal(forward.rows[torch.arange(6), 0].argmax(dim=1) <= last, torch.ones(6, dtype=torch.bool))


@pytest.mark.parametrize("name", ["bert", "distilbert"])
def test_encoders_read_the_first_token_row(tiny, batch, name):
    adapter, forward = session_forward(tiny[name], batch, layer=0)
    assert adapter.describe()["query"] == "first token (CLS)"
    eager = copy.deepcopy(tiny[name]).eval()
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = eager(**batch, output_attentions=True).attentions
    assert torch.allclose(forward.rows, attentions[0][:, :, 0], atol=1e-6)


def test_a_model_outside_the_attention_interface_is_read_by_softmax_interception(tiny, batch):
    adapter, forward = session_forward(tiny["deberta-v2"], batch)
    described = adapter.describe()
    assert described["audited_with"] == "softmax interception"
    assert described["module"] == "deberta.encoder.layer.1.attention"
    eager = copy.deepcopy(tiny["deberta-v2"]).eval()
    with torch.no_grad():
        attentions = eager(**batch, output_attentions=True).attentions
    assert torch.allclose(forward.rows, attentions[1][:, :, 0], atol=1e-6)


def test_rollout_is_unavailable_outside_the_interface(tiny, batch):
    with pytest.raises(af.AttnFaithError, match="rollout"):
        af.audit(tiny["deberta-v2"], batch, aggregation="rollout", checks=["uniform"])


def test_the_report_says_what_was_read_and_replaced(tiny, batch):
    described = af.audit(tiny["bert"], batch, checks=["uniform"]).model
    assert described["class"] == "BertForSequenceClassification"
    assert described["attn_implementation"] == "sdpa"
    assert described["read"] == "layer 1, mean over heads"
    assert described["replaced"] == "layer 1: the query row of every head"
    assert described["module"] == "bert.encoder.layer.1.attention.self"
    assert described["output"] == "logits"


def test_causal_lm_output_is_the_next_token_distribution(tiny, batch):
    report = af.audit(tiny["gpt2"], batch, checks=["uniform"])
    assert report.model["output"] == "next-token distribution at the last real token"
    predicted = native_distribution(tiny["gpt2"], batch).argmax(dim=1)
    assert report.instances["predicted"] == predicted.tolist()


def test_layer_out_of_range_is_a_clear_error(tiny, batch):
    with pytest.raises(af.AttnFaithError, match=r"layer=5 is out of range: BertForSequenceClassification has 2 attention layers"):
        af.audit(tiny["bert"], batch, layer=5, checks=["uniform"])


def test_a_base_model_without_a_head_is_a_clear_error(batch):
    model = tf.BertModel(build("bert").config)
    with pytest.raises(af.AttnFaithError, match="base model without a head"):
        af.audit(model, batch)


def test_per_token_logits_of_a_non_generative_model_are_a_clear_error(batch):
    torch.manual_seed(0)
    model = tf.BertForTokenClassification(build("bert").config)
    with pytest.raises(af.AttnFaithError, match="one row of logits per token"):
        af.audit(model, batch, checks=["uniform"])


def test_an_encoder_decoder_model_is_a_clear_error(batch):
    config = tf.T5Config(vocab_size=120, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2, decoder_start_token_id=0)
    with pytest.raises(af.AttnFaithError, match="encoder-decoder"):
        af.audit(tf.T5ForConditionalGeneration(config), batch)


def test_layers_without_a_readable_attention_raise_attention_unavailable(batch):
    """A model outside the interface whose layers cannot be found: say why and what to do."""
    model = build("deberta-v2")
    model.config.num_hidden_layers = 7
    with pytest.raises(af.AttentionUnavailableError, match=r"af\.wrap"):
        af.audit(model, batch, checks=["uniform"])


def test_mixed_lengths_from_a_second_batch_reuse_the_adapter(tiny):
    adapter = af.huggingface(tiny["bert"])
    first = af.audit(adapter, token_batch(length=7), checks=["uniform"])
    second = af.audit(adapter, token_batch(length=11, seed=3), checks=["uniform"], layer=0)
    assert first.model["layer"] == 1 and second.model["layer"] == 0


@pytest.mark.parametrize(
    ("name", "path"),
    [
        (
            "bert",
            # 6 = the search's 4 + the padding and repeatability probes' 2 (probes.py)
            "counterfactual passes from layer 1 on cached hidden states (6 passes; 3 ran the edited layer once",
        ),
        ("llama", "one-token passes: the last real token alone from the edited layer up"),
    ],
)
def test_the_adversarial_search_backpropagates_through_the_layers_from_the_chosen_one_only(tiny, batch, name, path):
    adapter = af.huggingface(tiny[name])
    report = af.audit(adapter, batch, checks=["adversarial"], adversarial_method="search", adversarial_steps=3)
    assert report.model["forward"].startswith(path)
    full = af.audit(
        af.huggingface(tiny[name], shortcuts=False),
        batch,
        checks=["adversarial"],
        adversarial_method="search",
        adversarial_steps=3,
    )
    assert np.allclose(report.checks["adversarial"].per_instance, full.checks["adversarial"].per_instance, atol=1e-6)


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_instances_beyond_the_first_chunk_also_start_from_cached_hidden_states(tiny, batch, name):
    """More instances than batch_size: a chunk's new instances run the layers below once, then only the top."""
    rows = [0, 5, 4, 5]  # instance 0 is padded; 4 and 5 lie outside the first chunk of two
    later = {key: value[rows] for key, value in batch.items()}
    weights = later["attention_mask"].float() / later["attention_mask"].sum(dim=1, keepdim=True)
    edit = Edit(lambda rows, real, weights: weights.unsqueeze(1).expand_as(rows), {"weights": weights})
    _, full = session_forward(tiny[name], later, edit)
    adapter = HuggingFaceModel(tiny[name])
    with adapter.session(resolve_options(batch_size=2)):
        adapter.forward_chunked(prepare_batch(batch))
        before = shortcut_passes(adapter)
        shortcut = adapter.forward(prepare_batch(later), edit)
        assert shortcut_passes(adapter) == before + 1
    assert torch.allclose(shortcut.probs, full.probs, atol=1e-6)
    assert torch.allclose(shortcut.rows, full.rows, atol=1e-6)


def shortcut_passes(adapter: HuggingFaceModel) -> int:
    """Passes that ran from cached hidden states, or as one-token passes (causal decoders)."""
    return (adapter._hidden.passes if adapter._hidden is not None else 0) + (
        adapter._decoder.passes if adapter._decoder is not None else 0
    )


@pytest.mark.parametrize("name", ["bert", "roberta", "distilbert", "gpt2", "llama", "qwen2"])
def test_counterfactual_passes_from_cached_hidden_states_equal_full_passes(tiny, batch, name):
    one_hot = torch.zeros(batch["input_ids"].shape)
    one_hot[:, 1] = 1.0
    edit = Edit(lambda rows, real, weights: weights.unsqueeze(1).expand_as(rows), {"weights": one_hot})
    _, full = session_forward(tiny[name], batch, edit)
    adapter = HuggingFaceModel(tiny[name])
    with adapter.session(resolve_options()):
        adapter.forward_chunked(prepare_batch(batch))
        shortcut = adapter.forward(prepare_batch(batch), edit)
        assert shortcut_passes(adapter) == 1
        path = "one-token passes" if name in DECODERS else "counterfactual passes from layer 1 on cached hidden states"
        assert adapter.describe()["forward"].startswith(path)
    assert torch.allclose(shortcut.probs, full.probs, atol=1e-6)
    assert torch.allclose(shortcut.rows, full.rows, atol=1e-6)
