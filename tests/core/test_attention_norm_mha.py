"""``attention_norm`` on a wrapped ``nn.MultiheadAttention``: the decoy model, where the [CLS] query puts nearly all
its attention on tokens whose value vectors are zero and the output is decided by a weakly attended token."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import pytest_attnfaith as af

CLS, SEP, PAD, DECOYS, POSITIVE, NEGATIVE, FILLERS = 1, 2, 0, (3, 4), 5, 6, (7, 8, 9)


class DecoyAttention(nn.Module):
    """One-hot embeddings; one head. [CLS]'s query scores the decoys 6 above every other key; the values are zero but
    the evidence token's (+e₁ positive, −e₁ negative); the logits read the [CLS] output along e₁."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 10)
        self.attn = nn.MultiheadAttention(10, 1, batch_first=True)
        with torch.no_grad():
            self.embed.weight.copy_(torch.eye(10))
            weight = torch.zeros(30, 10)
            weight[0, CLS] = 6.0 * 10**0.5  # query: [CLS] → e₀
            weight[10, list(DECOYS)] = 1.0  # key: decoys → e₀
            weight[21, POSITIVE], weight[21, NEGATIVE] = 1.0, -1.0  # value: evidence → ±e₁
            self.attn.in_proj_weight.copy_(weight)
            self.attn.in_proj_bias.zero_()
            self.attn.out_proj.weight.copy_(torch.eye(10))
            self.attn.out_proj.bias.zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        h, _ = self.attn(x, x, x, key_padding_mask=~attention_mask.bool())
        return 400.0 * torch.stack([-h[:, 0, 1], h[:, 0, 1]], dim=1)


def decoy_inputs(count: int, seed: int) -> dict[str, torch.Tensor]:
    generator = np.random.default_rng(seed)
    bodies = []
    for index in range(count):
        body = [*generator.choice(DECOYS, 3), POSITIVE if index % 2 else NEGATIVE, *generator.choice(FILLERS, 4)]
        bodies.append([CLS, *(int(token) for token in generator.permutation(body)), SEP])
    ids = torch.tensor(bodies)
    special = torch.zeros_like(ids)
    special[:, [0, -1]] = 1
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "special_tokens_mask": special}


def test_the_decoy_attention_is_built_as_described() -> None:
    net, inputs = DecoyAttention().eval(), decoy_inputs(20, seed=1)
    x = net.embed(inputs["input_ids"])
    with torch.no_grad():
        logits = net(inputs["input_ids"], inputs["attention_mask"])
        _, weights = net.attn(x, x, x)
    assert torch.equal(logits.argmax(dim=1), torch.arange(20) % 2)
    decoys = torch.isin(inputs["input_ids"], torch.tensor(DECOYS))
    assert (weights[:, 0] * decoys).sum(dim=1).min() > 0.9


@pytest.mark.parametrize("removal", ["delete", "mask"])
def test_attention_norm_passes_comprehensiveness_where_attention_fails(removal: str) -> None:
    model = af.wrap(DecoyAttention(), attention="attn", embeddings="embed")
    inputs = decoy_inputs(40, seed=2)
    comparison = af.compare_explanations(model, inputs, ["attention", "attention_norm"], removal=removal, mask_token_id=PAD)
    reports = comparison.reports
    assert reports["attention"].checks["comprehensiveness"].verdict == "failed"
    assert reports["attention_norm"].checks["comprehensiveness"].verdict == "passed"
    assert comparison.ranking == ["attention_norm", "attention"]


def test_attention_norm_is_kobayashis_norm_on_the_module() -> None:
    net, inputs = DecoyAttention().eval(), decoy_inputs(6, seed=3)
    with torch.no_grad():
        net.attn.in_proj_weight.add_(0.1 * torch.randn(30, 10, generator=torch.Generator().manual_seed(0)))
    scores = af.explain(af.wrap(net, attention="attn", embeddings="embed"), inputs, "attention_norm")
    x = net.embed(inputs["input_ids"]).detach()
    with torch.no_grad():
        _, weights = net.attn(x, x, x, average_attn_weights=False)
        values = x @ net.attn.in_proj_weight[20:].T  # one head: f(x_j) = v_j W_oᵀ with W_o = I
    norms = (weights[:, 0, 0, :, None] * values).norm(dim=-1).double()
    real = ~inputs["special_tokens_mask"].bool()
    expected = torch.where(real, norms, 0.0) / torch.where(real, norms, 0.0).sum(dim=1, keepdim=True)
    np.testing.assert_allclose(scores, expected.numpy(), atol=1e-6)
