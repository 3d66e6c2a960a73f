"""Layers, heads, rollout, per-head tables, tokens, mask tokens and special tokens on Hugging Face models."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers as tf

import pytest_attnfaith as af
from pytest_attnfaith.metrics import restrict
from pytest_attnfaith.options import resolve_options
from tests.huggingface.conftest import build, token_batch


def eager_attentions(model: tf.PreTrainedModel, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Every layer's attention (B, H, T, T), as transformers itself returns it."""
    eager = copy.deepcopy(model).eval()
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        return eager(**inputs, output_attentions=True).attentions


def reported(report: af.Report) -> list[torch.Tensor]:
    return [torch.tensor(row) for row in report.instances["attention"]]


def restricted_rows(rows: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    values = restrict(rows.float(), mask.bool())
    return [row[m.bool()] for row, m in zip(values, mask, strict=True)]


def assert_rows_equal(report: af.Report, rows: torch.Tensor, mask: torch.Tensor) -> None:
    for got, expected in zip(reported(report), restricted_rows(rows, mask), strict=True):
        assert torch.allclose(got, expected, atol=1e-5)


def test_rollout_matches_abnar_and_zuidema_computed_from_the_models_own_attentions(tiny, batch):
    attentions = eager_attentions(tiny["bert"], batch)
    eye = torch.eye(batch["input_ids"].shape[1])
    rollout = eye
    for layer in attentions:
        rollout = (0.5 * layer.mean(dim=1) + 0.5 * eye) @ rollout
    report = af.audit(tiny["bert"], batch, checks=["uniform"], aggregation="rollout")
    assert_rows_equal(report, rollout[:, 0], batch["attention_mask"])
    assert report.model["read"].startswith("attention rollout up to layer 1")


def test_rollout_differs_from_the_last_layer_alone(tiny, batch):
    plain = af.audit(tiny["bert"], batch, checks=["uniform"])
    rolled = af.audit(tiny["bert"], batch, checks=["uniform"], aggregation="rollout")
    assert max((a - b).abs().max() for a, b in zip(reported(plain), reported(rolled), strict=True)) > 1e-3


@pytest.mark.parametrize(("layer", "head"), [(0, 2), (-1, 3), (1, "mean")])
def test_layer_and_head_choose_the_row_read(tiny, batch, layer, head):
    attentions = eager_attentions(tiny["bert"], batch)
    report = af.audit(tiny["bert"], batch, checks=["uniform"], layer=layer, head=head)
    chosen = attentions[layer][:, :, 0]
    assert_rows_equal(report, chosen.mean(dim=1) if head == "mean" else chosen[:, head], batch["attention_mask"])


def test_a_head_index_out_of_range_is_a_clear_error(tiny, batch):
    with pytest.raises(af.AttnFaithError, match="head=4 is out of range: the attention has 4 heads"):
        af.audit(tiny["bert"], batch, checks=["uniform"], head=4)


@pytest.mark.parametrize("name", ["bert", "llama", "deberta-v2"])
def test_per_head_table_has_every_layer_head_and_check(tiny, batch, name):
    report = af.audit(tiny[name], batch, checks=["uniform", "gradient"], per_head=True)
    cells = {(row["layer"], row["head"], row["check"]) for row in report.per_head}
    heads = (0, 1, 2, 3, "all")
    assert cells == {(layer, head, check) for layer in (0, 1) for head in heads for check in ("uniform", "gradient")}
    assert len({round(row["statistic"], 6) for row in report.per_head if row["check"] == "gradient"}) > 1
    assert report.model["layer"] == 1 and report.model["read"] == "layer 1, mean over heads"


def test_gradient_importance_is_taken_at_the_input_embeddings(tiny, batch):
    report = af.audit(tiny["bert"], batch, checks=["gradient"])
    importance = report.checks["gradient"].details["importance"]
    assert all(len(row) == int(m.sum()) and max(row) > 0 for row, m in zip(importance, batch["attention_mask"], strict=True))
    adapter = af.huggingface(tiny["bert"])
    assert adapter.embeddings_module() is tiny["bert"].bert.embeddings.word_embeddings


def test_reports_show_the_tokenizers_tokens_without_special_tokens(tokenizer):
    model = tf.BertForSequenceClassification(
        tf.BertConfig(**{**build("bert").config.to_dict(), "vocab_size": tokenizer.vocab_size})
    )
    inputs = tokenizer(
        ["a wonderful film", "the plot was awful and boring"], padding=True, return_tensors="pt", return_special_tokens_mask=True
    )
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(set(kwargs)), with_kwargs=True)
    try:
        report = af.audit(af.huggingface(model, tokenizer=tokenizer), inputs, checks=["uniform", "loo"])
    finally:
        handle.remove()
    assert report.instances["tokens"] == [["a", "wonderful", "film"], ["the", "plot", "was", "awful", "and", "boring"]]
    assert [len(row) for row in report.instances["attention"]] == [3, 6]
    assert seen and all("special_tokens_mask" not in keys for keys in seen)
    assert report.model["tokenizer"] == tokenizer.name_or_path


def test_without_a_tokenizer_reports_show_token_ids(tiny):
    inputs = token_batch(size=2, padded=0)
    report = af.audit(tiny["bert"], inputs, checks=["uniform"])
    assert report.instances["tokens"][0] == [str(int(i)) for i in inputs["input_ids"][0]]
    assert report.model["tokenizer"] is None


def test_the_tokenizer_saved_beside_the_weights_is_used(minilm, sentiment):
    inputs, _ = sentiment
    report = af.audit(minilm, inputs, checks=["uniform"])
    assert report.instances["tokens"][0][0].isalpha()
    assert report.model["tokenizer"] == minilm.config._name_or_path


def test_loo_mask_replaces_tokens_by_the_tokenizers_mask_token(tiny, batch, tokenizer):
    adapter = af.huggingface(tiny["bert"], tokenizer=tokenizer)
    assert af.audit(adapter, batch, checks=["loo"], loo="mask").checks["loo"].details["variant"] == "mask"
    assert adapter.mask_token_id() == tokenizer.mask_token_id == 103


def test_the_mask_token_option_wins_and_the_config_pad_token_is_the_fallback(tiny, batch):
    adapter = af.huggingface(tiny["roberta"])
    with adapter.session(resolve_options()):
        assert adapter.mask_token_id() == 1
    with adapter.session(resolve_options(mask_token_id=7)):
        assert adapter.mask_token_id() == 7
    assert adapter.mask_token_id() == 1, "the option is the session's, not the adapter's"


def test_loo_mask_changes_the_importance_compared_with_deletion(tiny, batch):
    deleted = af.audit(tiny["bert"], batch, checks=["loo"]).checks["loo"].details["importance"]
    masked = af.audit(tiny["bert"], batch, checks=["loo"], loo="mask").checks["loo"].details["importance"]
    assert deleted != masked


def test_a_tokenizer_that_is_not_one_is_a_clear_error(tiny):
    with pytest.raises(af.AttnFaithError, match="expected a transformers tokenizer"):
        af.huggingface(tiny["bert"], tokenizer="bert-base-uncased")
