"""Re-run only what the replaced attention feeds, for ``wrap()`` models.

The model's forward is traced once per audit session with ``torch.fx`` (the attention module kept
as one call, packed-sequence helpers as single calls). The graph splits in two: *downstream*, the
attention module, everything that depends on its output, and the output itself; *upstream*,
everything else. The upstream values that downstream reads (the *frontier*, e.g. the BiLSTM's
hidden states and the attention scores) are computed once per instance and cached; a
counterfactual pass (one that edits the attention) then evaluates only downstream.

Derived batches are matched to cached rows by the content of their inputs (a hash of each row,
then an exact comparison), so the checks need not say where their rows came from: repeated or
reordered instances (permutation, uniform, erasure, adversarial) hit the cache; shortened or
rewritten ones (leave-one-out) do not match and never reach this path anyway (they edit no
attention). Before use, the split is certified on two small probe batches: every frontier value must
be either one row per instance or the same for any batch, and the partial pass must reproduce
the full forward. Anything else — a forward ``torch.fx`` cannot trace, data-dependent control flow,
a value that mixes instances — falls back to the full forward, and ``note`` says why.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.nn.utils import rnn

from pytest_attnfaith.adapters.patches import patch
from pytest_attnfaith.adapters.reading import Reading
from pytest_attnfaith.adapters.rowcache import RowCache, per_instance
from pytest_attnfaith.adapters.tap import AttentionTap
from pytest_attnfaith.metrics import logits_of

LEAF_FUNCTIONS = ("pack_padded_sequence", "pad_packed_sequence", "pack_sequence", "pad_sequence")
RTOL, ATOL = 1e-5, 1e-6


class _Tracer(fx.Tracer):
    def __init__(self, leaf: nn.Module) -> None:
        super().__init__(autowrap_functions=tuple(patch(rnn, name).unpatched() for name in LEAF_FUNCTIONS))
        self.leaf = leaf

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m is self.leaf or super().is_leaf_module(m, module_qualified_name)


@contextlib.contextmanager
def _rnn_leaves(tracer: fx.Tracer) -> Iterator[None]:
    """``nn.utils.rnn.pack_padded_sequence`` etc. become single graph calls while this thread traces (process-wide
    patches, counted and routed per thread: ``patches``)."""
    originals: dict[str, Callable[..., Any]] = {}

    def leaf(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if any(isinstance(arg, fx.Proxy) for arg in (*args, *kwargs.values())):
                return tracer.create_proxy("call_function", originals[name], args, kwargs)
            return originals[name](*args, **kwargs)

        return call

    with contextlib.ExitStack() as stack:
        for name in LEAF_FUNCTIONS:
            originals[name] = stack.enter_context(patch(rnn, name).routed(leaf(name)))
        yield


def trace(module: nn.Module, attention: nn.Module, names: list[str]) -> tuple[fx.Graph, dict[str, Any]]:
    """The forward's graph for keyword inputs ``names`` (other parameters fixed at their defaults),
    and the constants fx would have stored on the module (removed again: the module is left as it was)."""
    signature = inspect.signature(module.forward)
    concrete = {name: p.default for name, p in signature.parameters.items() if name not in names and p.default is not p.empty}
    before = set(vars(module))
    tracer = _Tracer(attention)
    try:
        with _rnn_leaves(tracer):
            graph = tracer.trace(module, concrete_args=concrete)
    finally:
        added = {name: vars(module)[name] for name in set(vars(module)) - before}
        for name in added:
            delattr(module, name)
    return graph, added


@dataclass
class Plan:
    """The split of a traced forward: upstream nodes (in order), frontier, downstream nodes (in order)."""

    upstream: list[fx.Node]
    frontier: list[fx.Node]
    downstream: list[fx.Node]
    constants: dict[str, Any]
    kinds: dict[fx.Node, str] = field(default_factory=dict)
    fixed: dict[fx.Node, Any] = field(default_factory=dict)

    @classmethod
    def split(cls, graph: fx.Graph, module: nn.Module, attention: nn.Module, constants: dict[str, Any]) -> Plan:
        nodes = list(graph.nodes)
        roots = [n for n in nodes if n.op == "call_module" and module.get_submodule(str(n.target)) is attention]
        if not roots:
            raise ValueError("the attention module is not called in the traced forward")
        downstream: set[fx.Node] = set()
        todo = list(roots) + [n for n in nodes if n.op == "output"]
        while todo:
            node = todo.pop()
            if node not in downstream:
                downstream.add(node)
                todo.extend(node.users)
        frontier = {arg for node in downstream for arg in node.all_input_nodes if arg not in downstream}
        needed = set(frontier)
        for node in reversed(nodes):
            if node in needed:
                needed.update(node.all_input_nodes)
        return cls(
            upstream=[n for n in nodes if n in needed],
            frontier=[n for n in nodes if n in frontier and n.op != "placeholder"],
            downstream=[n for n in nodes if n in downstream or (n in frontier and n.op == "placeholder")],
            constants=constants,
        )

    def describe(self) -> str:
        cached = ", ".join(n.name for n in self.frontier if self.kinds.get(n) == "rows")
        count = len(self.downstream)
        return (
            f"counterfactual passes re-run {count} graph nodes from the attention on; cached per instance: {cached or 'nothing'}"
        )


def _fetch(root: nn.Module, target: str, constants: dict[str, Any]) -> Any:
    if target in constants:
        return constants[target]
    value: Any = root
    for part in target.split("."):
        value = getattr(value, part)
    return value


def evaluate(
    root: nn.Module, nodes: list[fx.Node], env: dict[fx.Node, Any], inputs: dict[str, Any], constants: dict[str, Any]
) -> Any:
    """Evaluate ``nodes`` in order into ``env``; returns the output node's value (None if not among them)."""
    result = None
    for node in nodes:
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "placeholder":
            env[node] = inputs[str(node.target)] if node.target in inputs else node.args[0]
        elif node.op == "get_attr":
            env[node] = _fetch(root, str(node.target), constants)
        elif node.op == "call_function":
            env[node] = node.target(*args, **kwargs)  # type: ignore[operator]
        elif node.op == "call_method":
            env[node] = getattr(args[0], str(node.target))(*args[1:], **kwargs)
        elif node.op == "call_module":
            env[node] = root.get_submodule(str(node.target))(*args, **kwargs)
        else:
            result = args[0]
    return result


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and a.device == b.device
            and bool(torch.equal(a, b))
        )
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # anything not comparable is not a constant
        return False


def _rowwise(one: Any, two: Any) -> bool:
    """``one`` computed on instance [j], ``two`` on instances [i, j]: one row per instance?"""
    if not (isinstance(one, Tensor) and isinstance(two, Tensor)) or one.dim() == 0 or two.dim() == 0:
        return False
    if one.shape[0] != 1 or two.shape[0] != 2 or one.shape[1:] != two.shape[1:] or one.dtype != two.dtype:
        return False
    if one.is_floating_point():
        return bool(torch.allclose(one[0], two[1], rtol=RTOL, atol=ATOL))
    return bool(torch.equal(one[0], two[1]))


def _slot(node: fx.Node) -> str:
    return f"node:{node.name}"


class PartialForward:
    """Counterfactual passes of one ``wrap()`` model that reuse what does not depend on attention."""

    def __init__(self, module: nn.Module, attention: nn.Module, tap: AttentionTap) -> None:
        self.module = module
        self.attention = attention
        self.tap = tap
        self.note = "not used yet: full forward passes"
        self.reset()

    def reset(self, capacity: int = Reading.batch_size) -> None:
        """Forget the plan and the cache (a new session: the weights or the device may have changed).

        The cache holds at most ``capacity`` instances (the audit's ``batch_size``): when full it starts
        afresh, so memory stays bounded; sweeps over instances in order (every check) lose nothing, and rows
        of one chunk that share an instance still share its upstream pass.
        """
        self.plan: Plan | None = None
        self.signature: tuple[Any, ...] | None = None
        self.failed: str | None = None
        self.cache = RowCache(capacity)

    def run(self, kwargs: dict[str, Any]) -> Any:
        """The model's output for ``kwargs``: downstream only where the inputs' rows are cached or cacheable."""
        rows = per_instance(kwargs)
        plan = self._plan(kwargs, rows)
        if plan is None:
            return self.module(**kwargs)
        slots = self.cache.slots(rows, lambda picked: self._upstream(plan, rows, picked))
        if slots is None:
            return self.module(**kwargs)
        return self._downstream(
            plan, kwargs, {n: self.cache.stored[_slot(n)][slots] for n in plan.frontier if plan.kinds[n] == "rows"}
        )

    # -- plan -------------------------------------------------------------------------------
    def _plan(self, kwargs: dict[str, Any], rows: dict[str, Tensor]) -> Plan | None:
        signature = tuple(sorted(rows)) + tuple((k, repr(v)) for k, v in sorted(kwargs.items()) if k not in rows)
        if self.failed is not None or (self.signature is not None and signature != self.signature):
            return None
        if self.plan is None:
            self.signature = signature
            try:
                self.plan = self._build(kwargs, rows)
                self.note = self.plan.describe()
            except Exception as err:  # any failure to trace or certify: full forward
                self.failed = f"full forward passes: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                self.note = self.failed
                return None
        return self.plan

    def _build(self, kwargs: dict[str, Any], rows: dict[str, Tensor]) -> Plan:
        graph, constants = trace(self.module, self.attention, list(kwargs))
        plan = Plan.split(graph, self.module, self.attention, constants)
        size = next(iter(rows.values())).shape[0]
        last = torch.tensor([size - 1])
        pair = torch.tensor([0, size - 1])
        one, two = self._probe(plan, kwargs, rows, last), self._probe(plan, kwargs, rows, pair)
        for node in plan.frontier:
            if _same(one[node], two[node]):
                plan.kinds[node] = "constant"
                plan.fixed[node] = two[node]
            elif _rowwise(one[node], two[node]):
                plan.kinds[node] = "rows"
            else:
                raise ValueError(f"the value {node.name!r} upstream of the attention is neither per instance nor constant")
        self._certify(plan, kwargs, rows, pair, two)
        return plan

    def _inputs(self, kwargs: dict[str, Any], rows: dict[str, Tensor], index: Tensor) -> dict[str, Any]:
        return {k: (v[index.to(v.device)] if k in rows else v) for k, v in kwargs.items()}

    def _probe(self, plan: Plan, kwargs: dict[str, Any], rows: dict[str, Tensor], index: Tensor) -> dict[fx.Node, Any]:
        env: dict[fx.Node, Any] = {}
        with torch.no_grad():
            evaluate(self.module, plan.upstream, env, self._inputs(kwargs, rows, index), plan.constants)
        return env

    def _certify(
        self, plan: Plan, kwargs: dict[str, Any], rows: dict[str, Tensor], index: Tensor, env: dict[fx.Node, Any]
    ) -> None:
        """The partial pass must give the full forward's output on the probe (tap off)."""
        inputs = self._inputs(kwargs, rows, index)
        with self.tap.suspended(), torch.no_grad():
            full = logits_of(self.module(**inputs))
            partial = logits_of(
                evaluate(self.module, plan.downstream, {n: env[n] for n in plan.frontier}, inputs, plan.constants)
            )
        if full.shape != partial.shape or not torch.allclose(full, partial, rtol=RTOL, atol=ATOL):
            raise ValueError("the partial pass does not reproduce the full forward on a probe batch")

    # -- cache ------------------------------------------------------------------------------
    def _upstream(self, plan: Plan, rows: dict[str, Tensor], picked: Tensor) -> dict[str, Tensor]:
        """The frontier values of the rows ``picked`` (one per distinct instance), by cache slot name."""
        env: dict[fx.Node, Any] = {}
        inputs = {k: v[picked.to(v.device)] for k, v in rows.items()}
        with torch.no_grad():
            evaluate(self.module, plan.upstream, env, inputs, plan.constants)
        return {_slot(n): env[n] for n in plan.frontier if plan.kinds[n] == "rows"}

    def _downstream(self, plan: Plan, kwargs: dict[str, Any], cached: dict[fx.Node, Tensor]) -> Any:
        env: dict[fx.Node, Any] = {**plan.fixed, **cached}
        return evaluate(self.module, plan.downstream, env, kwargs, plan.constants)
