"""The memory-lean supernet computes what the plain one does: loss, gradients (weights and
alphas) and BatchNorm running statistics, over two steps, in both spaces."""

import contextlib

import pytest
import torch

from tests.tiny import ROOT
from voxnas.config import load_config
from voxnas.search_spaces.memory_trace import Bf16Autocast
from voxnas.search_spaces.mixed import MixedOp, set_memory_lean
from voxnas.search_spaces.registry import create_model
from voxnas.trainables.models import build_model, model_kwargs

CASES = {
    "vnas-supernet": (1, (32, 32, 16), {"width": 1 / 16, "psp": False}),
    "nas3dunet-supernet": (2, (16, 16, 16), {"init_kernels": 2, "depth": 2, "nodes": 3}),
}


def _some(model) -> list[str]:
    """Every other searched MixedOp: recomputed next to plain ones (``model.lean_budget``)."""
    names = [n for n, m in model.named_modules() if isinstance(m, MixedOp) and len(m.ops) > 1]
    return names[::2]


def _two_steps(name: str, lean: bool | str, patch=None):
    in_ch, default_patch, kw = CASES[name]
    torch.manual_seed(0)
    model = create_model(name, in_ch, 3, **kw)
    model = set_memory_lean(model, _some(model) if lean == "some" else lean)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        x = torch.randn(1, in_ch, *(patch or default_patch), generator=gen)
        loss = model(x).square().mean()
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return loss.detach(), grads, {n: b.clone() for n, b in model.named_buffers()}


@pytest.mark.integration
@pytest.mark.parametrize("lean", [True, "some"], ids=["every", "some"])
@pytest.mark.parametrize("name", list(CASES))
def test_memory_lean_same_loss_gradients_and_statistics(name, lean):
    torch.set_num_threads(1)
    loss0, g0, b0 = _two_steps(name, False)
    loss1, g1, b1 = _two_steps(name, lean)
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=1e-6)
    assert g0.keys() == g1.keys() and any(n.startswith("alpha") for n in g0)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-4, atol=1e-6, msg=n)
    for n in b0:
        torch.testing.assert_close(b1[n], b0[n], rtol=1e-5, atol=1e-6, msg=n)


def _first_leaf(module: torch.nn.Module) -> torch.nn.Module:
    return next(m for m in module.modules() if not list(m.children()))


def test_memory_lean_switches_only_mixed_ops_and_recomputes():
    model = create_model("vnas-supernet", 1, 3, width=1 / 16, psp=False)
    some = _some(model)
    set_memory_lean(model, some)
    named = {n: m for n, m in model.named_modules() if isinstance(m, MixedOp)}
    assert [n for n, m in named.items() if m.memory_lean] == some and len(some) < len(named)
    set_memory_lean(model)
    mixed = list(named.values())
    assert mixed and all(m.memory_lean for m in mixed)
    calls = []
    op = _first_leaf(mixed[0].ops[1])  # 3D: the folded CPU mixing calls its children
    op.register_forward_hook(lambda *a: calls.append(1))
    model(torch.randn(1, 1, 32, 32, 16)).sum().backward()
    assert len(calls) == 2  # forward, then the recomputation in backward
    set_memory_lean(model, False)
    assert not any(m.memory_lean for m in mixed)


def test_memory_lean_moves_batchnorm_statistics_once():
    """The recomputation replays the statistics of the first forward and restores them."""
    model = set_memory_lean(create_model("vnas-supernet", 1, 3, width=1 / 16, psp=False))
    model(torch.randn(1, 1, 32, 32, 16)).sum().backward()
    counts = {int(b) for n, b in model.named_buffers() if n.endswith("num_batches_tracked")}
    assert counts == {1}


@pytest.mark.parametrize("emulated", [False, True])
def test_recomputation_reenters_only_the_bf16_emulation(emulated):
    """A forward under the memory model's bf16 emulation is recomputed under it too (the
    model's bf16 figures for memory_lean), a plain forward plainly."""
    model = set_memory_lean(create_model("vnas-supernet", 1, 3, width=1 / 16, psp=False))
    op = _first_leaf(next(m for m in model.modules() if isinstance(m, MixedOp)).ops[1])
    seen = []
    op.register_forward_hook(lambda *a: seen.append(Bf16Autocast.active()))
    with Bf16Autocast() if emulated else contextlib.nullcontext():
        out = model(torch.randn(1, 1, 32, 32, 16))
    out.float().sum().backward()
    assert seen == [emulated, emulated]
    assert not Bf16Autocast.active()


def test_memory_lean_is_a_training_switch_not_architecture():
    """Bundles and MLflow keep model_kwargs: memory_lean is not among them (an older voxnas
    would fail to load the model), but the trained network is memory-lean."""
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["model.memory_lean=true"])
    assert not {"memory_lean", "lean_budget"} & set(model_kwargs(cfg))
    model = build_model(cfg, "vnas-supernet", 1, 3)
    assert all(m.memory_lean for m in model.modules() if isinstance(m, MixedOp))
