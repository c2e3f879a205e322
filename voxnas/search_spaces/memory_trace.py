"""Two ways to count the bytes a training step holds, one for the model and one for the check.

- :class:`LiveBytes` (the model): a dispatch mode that sees every tensor an aten op returns,
  counts its storage once and subtracts it when the storage dies (a weakref finalizer on the
  storage object, which PyTorch keeps alive exactly as long as the storage itself). On the
  ``meta`` device nothing is allocated or computed, so it replays the allocations of a
  paper-sized step (101 M parameters, 96x96x64) in seconds.
- :func:`allocator_peak` (the check): the real CPU peak of a function, from the allocation
  and free events that PyTorch's profiler records at the CPU allocator (exact bytes, including
  temporaries inside kernels, which a dispatch mode cannot see). It plays the part
  ``torch.cuda.max_memory_allocated`` plays on a GPU.

:class:`Bf16Autocast` emulates CUDA's bf16 autocast on any device (meta included, where
``torch.autocast`` does nothing): the same three op lists decide which ops run in bf16, which
in fp32 and which promote, so the traced activations have the dtypes a GPU step saves.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

__all__ = ["Bf16Autocast", "LiveBytes", "allocator_peak"]


class LiveBytes(TorchDispatchMode):
    """Live and peak bytes of the storages created inside the mode. Storages that existed
    before it are not counted (add them yourself), but an op only shows its outputs, so an
    in-place write into an old tensor (a gradient accumulated into ``p.grad``, BatchNorm's
    ``lerp_`` of its running statistics, an optimiser's ``add_``) would look like a new
    storage: pass those tensors as ``existing`` (parameters, buffers, gradients and
    optimiser state) and they count 0."""

    def __init__(self, existing: Iterable[torch.Tensor | None] = ()) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: dict[int, int] = {}
        self._keep = []  # the seeded storages: alive while traced, so their ids stay theirs
        for t in existing:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                self._keep.append(storage)
                self._seen[id(storage)] = 0

    def _free(self, key: int) -> None:
        self.live -= self._seen.pop(key, 0)

    def reset_peak(self) -> None:
        self.peak = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and not t.is_sparse:
                storage = t.untyped_storage()
                key = id(storage)
                if key in self._seen:
                    continue  # a view, or an in-place op's own output
                self._seen[key] = storage.nbytes()
                self.live += storage.nbytes()
                weakref.finalize(storage, self._free, key)
                self.peak = max(self.peak, self.live)
        return out


def allocator_peak(fn: Callable[[], object]) -> int:
    """Peak bytes allocated above the starting point while ``fn()`` runs on the CPU, from the
    profiler's allocator events (one thread: set ``torch.set_num_threads(1)`` first)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        size = getattr(node.extra_fields, "alloc_size", None)
        if size is not None and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, size))
    live = peak = 0
    for _, size in sorted(events, key=lambda e: e[0]):
        live += size
        peak = max(peak, live)
    return peak


# CUDA autocast's op lists (torch.amp docs, "CUDA Ops that can autocast to ...")
_LOW = frozenset({
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
    F.conv_transpose3d, F.linear, torch.matmul, torch.mm, torch.bmm, torch.addmm,
    torch.baddbmm, torch.mv, torch.Tensor.__matmul__, torch.Tensor.matmul, torch.conv3d,
    torch.conv_transpose3d,
})  # fmt: skip
_FP32 = frozenset({
    F.group_norm, F.layer_norm, F.softmax, F.log_softmax, F.cross_entropy, F.nll_loss,
    F.mse_loss, F.binary_cross_entropy_with_logits, torch.softmax, torch.log_softmax,
    torch.group_norm, torch.layer_norm, torch.sum, torch.Tensor.sum, torch.exp, torch.log,
    torch.pow, torch.Tensor.pow, torch.norm, torch.prod, torch.cumsum, torch.rsqrt,
})  # fmt: skip


class Bf16Autocast(TorchFunctionMode):
    """``torch.autocast("cuda", torch.bfloat16)`` on any device: floating inputs of
    convolutions and matrix products are cast to bf16 (each parameter once per forward, as
    autocast's weight cache does), of the fp32-list ops to fp32; everything else runs in the
    dtype it is given (type promotion decides mixed inputs, as under autocast).
    ``cache=False`` around backward: a checkpoint's recomputation runs under the autocast
    state of its forward (as ``torch.utils.checkpoint`` restores it), casting as it goes."""

    _active = 0  # instances entered and not yet exited (the meta replay is single-threaded)

    def __init__(self, cache: bool = True) -> None:
        super().__init__()
        self._cache: dict[int, torch.Tensor] = {}
        self._caching = cache

    @classmethod
    def active(cls) -> bool:
        """Whether an emulation is on: a recomputation in backward re-enters one
        (:mod:`voxnas.search_spaces.recompute`), as checkpoint re-enters ``torch.autocast``."""
        return cls._active > 0

    def __enter__(self):
        Bf16Autocast._active += 1
        return super().__enter__()

    def __exit__(self, *exc):
        Bf16Autocast._active -= 1
        self._cache.clear()  # autocast drops its weight casts on exit; the graph keeps its own
        return super().__exit__(*exc)

    def _cast(self, dtype: torch.dtype):
        def cast(t):
            if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dtype == dtype:
                return t
            if self._caching and isinstance(t, torch.nn.Parameter) and dtype == torch.bfloat16:
                if id(t) not in self._cache:
                    self._cache[id(t)] = t.to(dtype)
                return self._cache[id(t)]
            return t.to(dtype)

        return cast

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _LOW:
            args, kwargs = tree_map(self._cast(torch.bfloat16), (args, kwargs))
        elif func in _FP32:
            args, kwargs = tree_map(self._cast(torch.float32), (args, kwargs))
        return func(*args, **kwargs)
