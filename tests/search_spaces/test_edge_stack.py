"""NAS-3D-U-Net's same-kind candidates on the edges that read one state run as one convolution
(``search_spaces/edge_stack.py``): which candidates are stacked, that the stacked step computes
what each candidate on its own does (outputs and every gradient), and when it stays off."""

import copy

import torch

import voxnas.search_spaces.edge_stack as edge_stack
from voxnas.search_spaces.edge_stack import edge_groups, separate_edges
from voxnas.search_spaces.genotypes import derive_genotype
from voxnas.search_spaces.mixed import set_memory_lean
from voxnas.search_spaces.nas3dunet import Cell
from voxnas.search_spaces.registry import create_model

KW = {"init_kernels": 2, "depth": 2, "nodes": 3}


def _names(cell: Cell, state: int) -> list[tuple[str, ...]]:
    readers = cell.readers[state]
    return sorted(
        tuple(sorted(cell.edges[readers[e][4]].names[i] for e, i in group))
        for group in cell.stacks[state]
    )


def test_groups_are_the_same_convolution_on_every_edge_of_a_state():
    down, up = Cell("down", 3, 8, 8, 4), Cell("up", 3, 8, 8, 4)
    # a down cell's two inputs feed three strided hybrid modules each; dense convolutions
    # stack, one per edge, and the squeeze-and-excitation conv with the plain one (its
    # scaling folded into the kernel); not the depthwise one, not pools
    for s in (0, 1):
        assert _names(down, s) == [("d_conv",) * 3 + ("d_se_conv",) * 3, ("d_dil_conv",) * 3]
    assert _names(down, 2) == [("conv",) * 2, ("dil_conv",) * 2]  # nodes 1 and 2
    assert down.stacks[3] == ()  # read by node 2 alone
    assert _names(up, 0) == [("conv",) * 3, ("dil_conv",) * 3]  # se_conv is SE alone: no conv
    # transposed convolutions stack too (not with u_se_conv: slower, see edge_stack)
    assert _names(up, 1) == [("u_conv",) * 3, ("u_dil_conv",) * 3]
    assert edge_groups([]) == ()


def test_a_fixed_network_has_nothing_to_stack():
    supernet = create_model("nas3dunet-supernet", 2, 3, **KW)
    genotype = derive_genotype("nas3dunet", supernet.alphas())
    model = create_model(genotype, 2, 3, **KW)
    cells = [m for m in model.modules() if isinstance(m, Cell)]
    assert cells and all(not any(c.stacks) for c in cells)


def _step(model, x, separate: bool):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the head's dropout
    with separate_edges() if separate else torch.enable_grad():
        y = model(x)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _supernet(monkeypatch):
    calls = []
    real = edge_stack.stacked_edges
    monkeypatch.setattr(
        "voxnas.search_spaces.mixed.stacked_edges", lambda *a: calls.append(1) or real(*a)
    )
    torch.manual_seed(0)
    model = create_model("nas3dunet-supernet", 2, 3, **KW)
    with torch.no_grad():  # away from uniform alphas: the weights differ per candidate
        for a in model.arch_parameters():
            a.normal_()
    return model, torch.randn(1, 2, 16, 16, 16), calls


# every cell: its two inputs and the first node's state feed two or more edges
STACKED_STATES = 3 * (2 * KW["depth"] + 1)


def test_stacked_step_equals_separate_candidates_float64(monkeypatch):
    """PyTorch's own convolutions in float64: every parameter's gradient (kernels, GroupNorm
    affines, alphas) and the output match to rounding."""
    model, x, calls = _supernet(monkeypatch)
    ref, new, x = model.double(), copy.deepcopy(model).double(), x.double()
    y0, g0 = _step(ref, x, separate=True)
    assert not calls
    y1, g1 = _step(new, x, separate=False)
    assert len(calls) == STACKED_STATES
    torch.testing.assert_close(y1, y0, rtol=1e-9, atol=1e-10)
    assert g0.keys() == g1.keys() and any(n.startswith("alpha") for n in g0)
    for n in g0:
        scale = g0[n].abs().max().clamp_min(1e-30)
        torch.testing.assert_close(g1[n] / scale, g0[n] / scale, rtol=1e-9, atol=1e-10, msg=n)


def test_stacked_step_float32_as_accurate_as_separate(monkeypatch):
    """voxnas' oneDNN path in float32: stacked is as close to the float64 result as separate
    is. Squeeze-and-excitation gradients of the deepest cells are ill-conditioned in float32
    whichever way the step runs (attention over a few voxels: on an AMD EPYC with AVX-512 one
    edge's were 2.2e-4 off stacked, 8e-6 separate, while the other 781 tensors were within
    1e-5 either way), so a direct float32 comparison would test rounding; 5e-4 of slack.
    One stacked candidate's alpha weight 1% too high fails this test."""
    torch.set_num_threads(1)
    model, x, calls = _supernet(monkeypatch)
    exact = _step(copy.deepcopy(model).double(), x.double(), separate=True)
    old = _step(copy.deepcopy(model), x, separate=True)
    new = _step(model, x, separate=False)
    assert len(calls) == STACKED_STATES

    def err(a, b):
        return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()

    assert err(new[0], exact[0]) <= 2 * err(old[0], exact[0]) + 1e-6
    for n, g in exact[1].items():
        assert err(new[1][n], g) <= 2 * err(old[1][n], g) + 5e-4, n


def test_off_where_it_cannot_apply(monkeypatch):
    """Batch 2 (channel slices would not be contiguous), memory-lean MixedOps (recomputed one
    by one) and the DARTS reference sum run every candidate on its own."""
    from voxnas.search_spaces.mixed import darts_sum

    calls = []
    real = edge_stack.stacked_edges

    def spy(*a):
        out = real(*a)
        calls.append((a[2].shape[0], len(out)))
        return out

    monkeypatch.setattr("voxnas.search_spaces.mixed.stacked_edges", spy)
    model = create_model("nas3dunet-supernet", 2, 3, **KW)
    model(torch.randn(1, 2, 16, 16, 16))
    assert calls and all(n > 0 for _, n in calls)  # batch 1 stacks
    calls.clear()
    model(torch.randn(2, 2, 16, 16, 16))
    assert calls and all(n == 0 for _, n in calls)  # batch 2: asked, and it declined
    calls.clear()
    with darts_sum():
        model(torch.randn(1, 2, 16, 16, 16))
    set_memory_lean(model)
    model(torch.randn(1, 2, 16, 16, 16))
    assert not calls
