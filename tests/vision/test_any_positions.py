"""wrap() accepts any model whose embeddings output (B, T, D), whatever its inputs: audio-like frames here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import pytest_attnfaith as af
from pytest_attnfaith.options import CHECK_NAMES
from pytest_attnfaith.vision_zoo import ClassTokenAttention


class FrameClassifier(nn.Module):
    """Frames (B, T, F) → D by a linear map: attention of the first frame over every frame pools them."""

    def __init__(self, features: int = 5, dim: int = 16) -> None:
        super().__init__()
        self.embeddings = nn.Linear(features, dim)
        self.attention = ClassTokenAttention(dim)
        self.out = nn.Linear(dim, 3)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        e = torch.tanh(self.embeddings(input_features))
        return self.out(torch.einsum("bt,btd->bd", self.attention(e), e))


@pytest.fixture
def frames() -> dict[str, torch.Tensor]:
    return {"input_features": torch.randn(6, 7, 5, generator=torch.Generator().manual_seed(1))}


def test_frames_are_the_positions_and_every_one_is_real(frames):
    torch.manual_seed(0)
    net = af.wrap(FrameClassifier(), attention="attention", embeddings="embeddings")
    report = af.audit(net, frames, permutations=10, adversarial_steps=20)
    assert set(report.checks) == set(CHECK_NAMES)
    assert all(result.per_instance.shape == (6,) for result in report.checks.values())
    assert report.instances["tokens"][0] == [f"#{t}" for t in range(7)]
    assert "image" not in report.instances
    scores = af.explain(net, frames, "integrated_gradients", baseline="mean", ig_steps=8)
    assert scores.shape == (6, 7) and np.isfinite(scores).all()


def test_a_special_tokens_mask_marks_positions_never_removed(frames):
    torch.manual_seed(0)
    net = af.wrap(FrameClassifier(), attention="attention", embeddings="embeddings")
    special = torch.zeros(6, 7, dtype=torch.long)
    special[:, 0] = 1
    scores = af.explain(net, {**frames, "special_tokens_mask": special}, "leave_one_out", loo="mask")
    assert np.all(scores[:, 0] == 0) and np.abs(scores[:, 1:]).sum() > 0
    with pytest.raises(af.AttnFaithError, match=r"special_tokens_mask.*expected \(6, 7\), one value per position"):
        af.explain(net, {**frames, "special_tokens_mask": special[:, :5]}, "attention")
