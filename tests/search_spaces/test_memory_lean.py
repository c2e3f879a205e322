"""The memory-lean supernet computes what the plain one does: loss, gradients (weights and
alphas) and BatchNorm running statistics, over two steps, in both spaces."""

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from voxnas.search_spaces.mixed import MixedOp, set_memory_lean
from voxnas.search_spaces.registry import create_model

CASES = {
    "vnas-supernet": (1, (32, 32, 16), {"width": 1 / 16, "psp": False}),
    "nas3dunet-supernet": (2, (16, 16, 16), {"init_kernels": 2, "depth": 2, "nodes": 3}),
}


def _two_steps(name: str, lean: bool, patch=None):
    in_ch, default_patch, kw = CASES[name]
    torch.manual_seed(0)
    model = create_model(name, in_ch, 3, memory_lean=lean, **kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        x = torch.randn(1, in_ch, *(patch or default_patch), generator=gen)
        loss = model(x).square().mean()
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return loss.detach(), grads, {n: b.clone() for n, b in model.named_buffers()}


@pytest.mark.parametrize("name", list(CASES))
def test_memory_lean_same_loss_gradients_and_statistics(name):
    torch.set_num_threads(1)
    loss0, g0, b0 = _two_steps(name, False)
    loss1, g1, b1 = _two_steps(name, True)
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=1e-6)
    assert g0.keys() == g1.keys() and any(n.startswith("alpha") for n in g0)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-4, atol=1e-6, msg=n)
    for n in b0:
        torch.testing.assert_close(b1[n], b0[n], rtol=1e-5, atol=1e-6, msg=n)


def test_memory_lean_switches_only_mixed_ops_and_recomputes():
    model = create_model("vnas-supernet", 1, 3, memory_lean=True, width=1 / 16, psp=False)
    mixed = [m for m in model.modules() if isinstance(m, MixedOp)]
    assert mixed and all(m.memory_lean for m in mixed)
    calls = []
    op = mixed[0].ops[0]
    op.register_forward_hook(lambda *a: calls.append(1))
    model(torch.randn(1, 1, 32, 32, 16)).sum().backward()
    assert len(calls) == 2  # forward, then the recomputation in backward
    set_memory_lean(model, False)
    assert not any(m.memory_lean for m in mixed)


def test_plain_checkpoint_would_update_batchnorm_twice():
    """Why recompute.py replays the statistics: a bare checkpoint moves them twice."""
    torch.manual_seed(0)
    bn = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2))
    x = torch.randn(1, 1, 4, 4, 4)
    checkpoint(bn, x, use_reentrant=False).sum().backward()
    assert int(bn[1].num_batches_tracked) == 2
