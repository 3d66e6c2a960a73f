"""``perturbed``: a Hypothesis strategy of token-level edits of a batch, shrinking to the fewest edits.

An example is a list of at most ``max_edits`` abstract edits (kind, row, where, choice), drawn
with ``st.lists`` so that Hypothesis shrinks a failure by deleting edits first; each edit is
interpreted on the sequence left by the previous ones (``where`` and ``choice`` modulo what is
available), so deleting one edit never invalidates the others. An edit with nothing to act on
(e.g. a swap in a one-token row) is skipped and not recorded.

Special tokens ([CLS], [SEP], ...) and padding are never edited: edits act on the real,
non-special positions only, and every row is re-padded on the tokenizer's padding side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

from pytest_attnfaith.adapters import prepare_batch
from pytest_attnfaith.errors import AttnFaithError
from pytest_attnfaith.strategies.token_pool import TokenPool, build_token_pool

EDITS: tuple[str, ...] = ("substitute", "delete", "insert", "mask", "swap")


@dataclass(frozen=True)
class TokenEdit:
    """One applied edit. ``position`` indexes the row's unpadded sequence (special tokens included)
    as it was when the edit was applied; ``old``/``new`` are token ids (None where not applicable;
    for a swap, the tokens at ``position`` and ``position + 1``)."""

    kind: str
    row: int
    position: int
    old: int | None
    new: int | None

    def describe(self, vocabulary: TokenPool) -> str:
        old = repr(vocabulary.name(self.old)) if self.old is not None else ""
        new = repr(vocabulary.name(self.new)) if self.new is not None else ""
        what = {
            "substitute": f"{old} -> {new}",
            "delete": old,
            "insert": new,
            "mask": f"{old} -> {new}",
            "swap": f"{old} <-> {new}",
        }[self.kind]
        return f"row {self.row}: {self.kind} {what} at {self.position}"


@dataclass
class _Cell:
    """One unpadded position: its token, whether it is special, and its other per-token values."""

    token: int
    special: bool
    extras: tuple[Tensor, ...]


class PerturbedInputs(Mapping[str, Any]):
    """Model inputs (a mapping, usable wherever the base inputs are) and the edits that made them.

    Iterating gives only the input keys (``input_ids``, ``attention_mask``, ``special_tokens_mask``
    when known, and the base's other keys); ``edits``, ``texts`` and ``describe()`` show what changed.
    Its ``repr`` is the description, so Hypothesis' failure report shows the minimal failing text.
    """

    def __init__(
        self, tensors: dict[str, Any], edits: tuple[TokenEdit, ...], rows: list[list[int]], vocabulary: TokenPool
    ) -> None:
        self._tensors = tensors
        self.edits = edits
        self._rows = rows
        self._vocabulary = vocabulary

    def __getitem__(self, key: str) -> Any:
        return self._tensors[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    @property
    def texts(self) -> list[str]:
        """Each row's unpadded text (decoded by the tokenizer, or token names joined by spaces)."""
        return [self._vocabulary.text(row) for row in self._rows]

    @property
    def edited_rows(self) -> list[int]:
        return sorted({edit.row for edit in self.edits})

    def describe(self, rows: Sequence[int] | None = None) -> str:
        """The edits, then the text of the edited rows (or of ``rows``)."""
        shown = self.edited_rows if rows is None else list(rows)
        lines = [f"{len(self.edits)} edit{'s' if len(self.edits) != 1 else ''}"]
        lines += [f"  {edit.describe(self._vocabulary)}" for edit in self.edits]
        lines += [f"  row {row}: {self._vocabulary.text(self._rows[row])!r}" for row in shown]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"PerturbedInputs({self.describe()})"


class _Plan:
    """The base batch split into rows of cells, and how to apply abstract edits to it."""

    def __init__(
        self,
        base: Mapping[str, Any],
        vocabulary: TokenPool,
        kinds: tuple[str, ...],
        substitutions: dict[int, tuple[int, ...]] | None,
        distractors: tuple[int, ...] | None,
    ) -> None:
        batch = prepare_batch(base)
        self.vocabulary = vocabulary
        self.kinds = kinds
        self.substitutions = substitutions
        self.distractors = distractors
        self.ids_dtype = batch.input_ids.dtype
        self.mask_dtype = batch.attention_mask.dtype
        self.length = batch.length
        self.extra_names = list(batch.per_token)
        self.per_instance = dict(batch.per_instance)
        self.padding_side = _padding_side(vocabulary, batch.attention_mask)
        special = _special_mask(base, vocabulary, batch.input_ids)
        padding = ~batch.attention_mask.bool()
        self.with_special = vocabulary.tokenizer is not None or "special_tokens_mask" in base
        self.rows = [self._cells(batch, special, b) for b in range(batch.size)]
        pad_extras = tuple(torch.zeros_like(value[0, 0]) for value in batch.per_token.values())
        pad_special = bool(special[padding].all()) if bool(padding.any()) else vocabulary.tokenizer is not None
        self.pad = _Cell(vocabulary.pad_token_id, pad_special, pad_extras)

    def _cells(self, batch: Any, special: Tensor, b: int) -> list[_Cell]:
        ids, flags, mask = batch.input_ids[b].tolist(), special[b].tolist(), batch.attention_mask[b].tolist()
        extras = [value[b] for value in batch.per_token.values()]
        return [_Cell(ids[t], bool(flags[t]), tuple(value[t] for value in extras)) for t in range(batch.length) if mask[t]]

    @property
    def choices(self) -> int:
        """How many distinct token choices an edit may need (pool, distractors, alternatives)."""
        sizes = [len(self.vocabulary.pool), len(self.distractors or ()), 1]
        sizes += [len(alternatives) for alternatives in (self.substitutions or {}).values()]
        return max(sizes)

    def apply(self, abstract: list[tuple[int, int, int, int]]) -> PerturbedInputs:
        rows = [list(row) for row in self.rows]
        applied = []
        for kind_index, row, where, choice in abstract:
            kind = self.kinds[kind_index]
            edit = _APPLY[kind](self, rows[row], where, choice)
            if edit is not None:
                position, old, new = edit
                applied.append(TokenEdit(kind, row, position, old, new))
        return PerturbedInputs(self._tensors(rows), tuple(applied), [[c.token for c in row] for row in rows], self.vocabulary)

    def _tensors(self, rows: list[list[_Cell]]) -> dict[str, Any]:
        length = max(self.length, *(len(row) for row in rows))
        padded = [self._pad(row, self.pad, length) for row in rows]
        real = [self._pad([True] * len(row), False, length) for row in rows]
        out: dict[str, Any] = {
            "input_ids": torch.tensor([[c.token for c in row] for row in padded], dtype=self.ids_dtype),
            "attention_mask": torch.tensor(real, dtype=self.mask_dtype),
        }
        if self.with_special:
            out["special_tokens_mask"] = torch.tensor([[int(c.special) for c in row] for row in padded], dtype=torch.long)
        for index, name in enumerate(self.extra_names):
            out[name] = torch.stack([torch.stack([c.extras[index] for c in row]) for row in padded])
        out.update(self.per_instance)
        return out

    def _pad(self, row: list[Any], pad: Any, length: int) -> list[Any]:
        padding = [pad] * (length - len(row))
        return padding + row if self.padding_side == "left" else row + padding

    # -- the edits: each returns (position, old, new) or None when it has nothing to act on ------
    def _substitute(self, row: list[_Cell], where: int, choice: int) -> tuple[int, int, int] | None:
        editable = _editable(row)
        if self.substitutions is not None:
            editable = [i for i in editable if row[i].token in self.substitutions]
        if not editable:
            return None
        position = editable[where % len(editable)]
        old = row[position].token
        if self.substitutions is not None:
            alternatives = self.substitutions[old]
            new: int | None = alternatives[choice % len(alternatives)]
        else:
            new = self.vocabulary.pick(choice, avoid=old)
        if new is None:
            return None
        row[position] = _Cell(new, False, row[position].extras)
        return position, old, new

    def _delete(self, row: list[_Cell], where: int, choice: int) -> tuple[int, int, None] | None:
        editable = _editable(row)
        if len(editable) < 2:
            return None
        position = editable[where % len(editable)]
        return position, row.pop(position).token, None

    def _insert(self, row: list[_Cell], where: int, choice: int) -> tuple[int, None, int] | None:
        editable = _editable(row)
        if not editable:
            return None
        slot = where % (len(editable) + 1)
        position = editable[slot] if slot < len(editable) else editable[-1] + 1
        neighbour = row[editable[min(slot, len(editable) - 1)]]
        new = self.distractors[choice % len(self.distractors)] if self.distractors else self.vocabulary.pick(choice)
        if new is None:
            return None
        row.insert(position, _Cell(new, False, neighbour.extras))
        return position, None, new

    def _mask(self, row: list[_Cell], where: int, choice: int) -> tuple[int, int, int] | None:
        mask = self.vocabulary.mask_token_id
        editable = [i for i in _editable(row) if row[i].token != mask]
        if mask is None or not editable:
            return None
        position = editable[where % len(editable)]
        old = row[position].token
        row[position] = _Cell(mask, False, row[position].extras)
        return position, old, mask

    def _swap(self, row: list[_Cell], where: int, choice: int) -> tuple[int, int, int] | None:
        editable = set(_editable(row))
        pairs = [i for i in sorted(editable) if i + 1 in editable and row[i].token != row[i + 1].token]
        if not pairs:
            return None
        position = pairs[where % len(pairs)]
        row[position], row[position + 1] = row[position + 1], row[position]
        return position, row[position + 1].token, row[position].token


_APPLY: dict[str, Callable[..., Any]] = {
    "substitute": _Plan._substitute,
    "delete": _Plan._delete,
    "insert": _Plan._insert,
    "mask": _Plan._mask,
    "swap": _Plan._swap,
}


def _editable(row: list[_Cell]) -> list[int]:
    return [i for i, cell in enumerate(row) if not cell.special]


def _special_mask(base: Mapping[str, Any], vocabulary: TokenPool, ids: Tensor) -> Tensor:
    """The base's ``special_tokens_mask`` if given, else the tokenizer's special ids (none for a plain vocabulary)."""
    given = base.get("special_tokens_mask")
    if given is not None:
        return torch.as_tensor(given).bool()
    if vocabulary.tokenizer is None:
        return torch.zeros_like(ids, dtype=torch.bool)
    special = torch.tensor(sorted(vocabulary.special - {vocabulary.mask_token_id}), dtype=ids.dtype)
    return torch.isin(ids, special)


def _padding_side(vocabulary: TokenPool, mask: Tensor) -> str:
    """The tokenizer's padding side, else left when the base is visibly left-padded, else right."""
    if vocabulary.tokenizer is not None:
        return str(getattr(vocabulary.tokenizer, "padding_side", "right"))
    left_padded = (mask[:, 0] == 0) & (mask[:, -1] == 1)
    return "left" if bool(left_padded.any()) else "right"


def _kinds(edits: Sequence[str] | None, vocabulary: TokenPool) -> tuple[str, ...]:
    if edits is None:
        return tuple(kind for kind in EDITS if kind != "mask" or vocabulary.mask_token_id is not None)
    kinds = (edits,) if isinstance(edits, str) else tuple(edits)
    unknown = [kind for kind in kinds if kind not in EDITS]
    if unknown or not kinds:
        raise AttnFaithError(f"edits={edits!r} is not valid: expected a non-empty selection of {EDITS}")
    if "mask" in kinds and vocabulary.mask_token_id is None:
        raise AttnFaithError("edits include 'mask' but no mask token is known; pass mask_token_id= or a tokenizer that has one")
    return tuple(dict.fromkeys(kinds))


def _substitutions(substitutions: Any, vocabulary: TokenPool) -> dict[int, tuple[int, ...]] | None:
    if substitutions is None:
        return None
    if not isinstance(substitutions, Mapping):
        raise AttnFaithError(f"substitutions is a {type(substitutions).__name__}; expected a mapping token -> [alternatives]")
    table = {}
    for token, alternatives in substitutions.items():
        key = vocabulary.lookup(token, "substitutions key")
        table[key] = tuple(i for i in vocabulary.lookup_all(alternatives, f"substitutions[{token!r}]") if i != key)
    return {key: values for key, values in table.items() if values} or None


def _validate_base(base: Any, vocabulary: TokenPool) -> None:
    batch = prepare_batch(base)
    ids = batch.input_ids
    if vocabulary.size is not None and bool(((ids < 0) | (ids >= vocabulary.size)).any()):
        raise AttnFaithError(f"base_inputs hold token ids outside the tokenizer's vocabulary [0, {vocabulary.size})")


def perturbed(
    base_inputs: Mapping[str, Any],
    tokenizer: Any = None,
    vocabulary: Any = None,
    max_edits: int = 3,
    substitutions: Mapping[Any, Sequence[Any]] | None = None,
    distractors: Sequence[Any] | None = None,
    edits: Sequence[str] | None = None,
    *,
    mask_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> st.SearchStrategy[PerturbedInputs]:
    """Strategy of ``PerturbedInputs``: ``base_inputs`` (same batch size) with at most ``max_edits`` edits.

    ``edits`` (default: all of ``EDITS`` that apply; "mask" needs a mask token) are drawn in the
    order given, the first one preferred when shrinking. ``substitute`` draws from
    ``substitutions`` ({token: [alternatives]}, tokens as ids or strings) when given, else from
    the vocabulary; ``insert`` draws from ``distractors`` when given, else from the vocabulary.
    Shrinks toward fewer edits, the first row, earlier positions and earlier choices.
    """
    if isinstance(max_edits, bool) or not isinstance(max_edits, int) or max_edits < 0:
        raise AttnFaithError(f"max_edits={max_edits!r} is not valid: expected an integer >= 0")
    vocab = build_token_pool(tokenizer, vocabulary, mask_token_id, pad_token_id)
    _validate_base(base_inputs, vocab)
    table = _substitutions(substitutions, vocab)
    pool = vocab.lookup_all(distractors, "distractors") if distractors is not None else None
    if distractors is not None and not pool:
        raise AttnFaithError("distractors is empty; expected at least one token to insert (or None for the vocabulary)")
    plan = _Plan(base_inputs, vocab, _kinds(edits, vocab), table, pool)
    abstract = st.tuples(
        st.integers(0, len(plan.kinds) - 1),
        st.integers(0, len(plan.rows) - 1),
        st.integers(0, plan.length + max_edits),
        st.integers(0, plan.choices - 1),
    )
    return _edited(plan, st.lists(abstract, max_size=max_edits))


@st.composite
def _edited(draw: st.DrawFn, plan: _Plan, edits: st.SearchStrategy[list[tuple[int, int, int, int]]]) -> PerturbedInputs:
    """A composite (not ``.map``) so that Hypothesis reports the example by its ``repr``: the edited text."""
    return plan.apply(draw(edits))
