"""The adapter for Hugging Face ``transformers`` models: ``af.audit(model, tokenizer(texts, ...))``.

The adapter is built in layers, each a module:

- ``hf_text``: the tokenizer (tokens in reports, the mask token) and the output ``targets``;
- ``hf_model``: the attention layers, the attention function every layer calls, logits, rollout, the description;
- ``hf_hidden``: counterfactual passes from the chosen layer on cached hidden states (any stack of layers);
- ``hf_query``: bidirectional encoders share the edited layer between each instance's rows (query copies);
- ``hf_decoder``: causal decoders run the last real token alone over the clean pass's cached keys and values.

Each shortcut says when it applies, how it runs and how it is verified against the full pass; ``shortcuts=False``
runs every pass in full. Importing this module does not import transformers.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pytest_attnfaith.adapters import hf_query
from pytest_attnfaith.adapters.hf_decoder import DecoderPasses, DecoderShortcut
from pytest_attnfaith.adapters.hf_query import QueryCopyPasses


class HuggingFaceModel(DecoderPasses, QueryCopyPasses):
    """A ``transformers.PreTrainedModel`` (sequence classifier or causal LM), audited without ``wrap``."""

    def _found_layers(self) -> None:
        """A causal LM whose every layer is causal gets one-token passes; other stacks share the edited layer."""
        super()._found_layers()
        if self._hidden is None:
            return
        if self._generative() and all(layer.causal for layer in self.layers):
            self._decoder = DecoderShortcut(self.module, self._hidden.stack, self.options.batch_size)
        else:
            self._copies = hf_query.QueryCopies(self.module, self._hidden.stack)


def huggingface(model: nn.Module, tokenizer: Any = None, *, shortcuts: bool = True) -> HuggingFaceModel:
    """A Hugging Face model for ``af.audit``, with the tokenizer whose tokens the reports show (and that turns
    ``targets`` words into token ids).

    ``af.audit(model, inputs)`` accepts the model itself too; the tokenizer is then the one saved
    beside its weights, if it was loaded from a local folder, else reports show token ids.
    ``shortcuts=False`` runs every pass in full (no cached hidden states, no one-token passes): slower, for checking.
    """
    return HuggingFaceModel(model, tokenizer, shortcuts)
