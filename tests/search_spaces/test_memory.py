"""The memory model (meta device) against the real CPU peak (allocator events), within 15%,
for the demo config and a public-code-sized NAS-3D-U-Net; a GPU test checks it against
``torch.cuda.max_memory_allocated``."""

import pytest
import torch

from tests.tiny import ROOT
from voxnas.config import load_config
from voxnas.search_spaces.memory_probe import measured_step_peak
from voxnas.search_spaces.memory_trace import LiveBytes, allocator_peak
from voxnas.trainables.footprint import _loss, channels, step_bytes
from voxnas.trainables.models import build_model, supernet_name

DEMO = ROOT / "configs" / "demo.yaml"
# like the public code's network (4 modalities, 4 initial kernels, 3 nodes, Adam, Dice on
# sigmoid regions), one level shallower (depth 3) to run on a 16^3 patch
PUBLIC_NAS3D = [
    "model.init_kernels=4",
    "model.depth=3",
    "patch.search=[16,16,16]",
    "patch.train=[16,16,16]",
    "patch.test=[16,16,16]",
]


def _measure(cfg, arch, kind, device="cpu", precision="fp32") -> int:
    torch.manual_seed(0)
    in_ch, out_ch = channels(cfg)
    model = build_model(cfg, arch, in_ch, out_ch).to(device)
    opt = cfg.search.weight_optim if kind == "search" else cfg.retrain.optim
    ws = model.weight_parameters()
    w_opt = (
        torch.optim.SGD(ws, lr=1e-3, momentum=0.9, weight_decay=opt.weight_decay)
        if opt.name == "sgd"
        else torch.optim.Adam(ws, lr=1e-3)
    )
    if kind == "search":
        opts = (w_opt, torch.optim.AdamW(model.arch_parameters(), lr=1e-3))
    else:
        opts = (w_opt,)
    patch = cfg.patch.search if kind == "search" else cfg.patch.train
    return measured_step_peak(
        model,
        lambda: torch.randn(1, in_ch, *patch, device=device),
        _loss(cfg),
        kind,
        opts,
        precision,
    )


@pytest.mark.parametrize(
    ("config", "overrides", "arch", "kind"),
    [
        (DEMO, [], "vnas-supernet", "search"),
        (DEMO, [], "3D/3D", "retrain"),
        (ROOT / "configs" / "nas3dunet_brats.yaml", PUBLIC_NAS3D, "nas3dunet-supernet", "search"),
    ],
)
def test_model_matches_cpu_peak(config, overrides, arch, kind):
    torch.set_num_threads(1)
    cfg = load_config(config, overrides)
    patch = cfg.patch.search if kind == "search" else cfg.patch.train
    modelled = step_bytes(cfg, arch, patch, kind)
    real = _measure(cfg, arch, kind)
    assert abs(modelled - real) <= 0.15 * real, (modelled, real)


def test_search_step_holds_more_than_its_retrain_step():
    """The arch step's backward runs with the weight step's gradients held."""
    cfg = load_config(DEMO)
    name = supernet_name(cfg)
    search = step_bytes(cfg, name, cfg.patch.search, "search")
    retrain = step_bytes(cfg, name, cfg.patch.search, "retrain")
    assert search > retrain


def test_bf16_and_memory_lean_shrink_the_vnas_supernet():
    cfg = load_config(DEMO)
    name, patch = supernet_name(cfg), cfg.patch.search
    fp32 = step_bytes(cfg, name, patch, "search")
    assert step_bytes(cfg, name, patch, "search", "bf16") < 0.9 * fp32
    lean = load_config(DEMO, ["model.memory_lean=true"])
    assert step_bytes(lean, name, patch, "search") < 0.9 * fp32


def test_live_bytes_counts_allocations_and_frees():
    with LiveBytes() as live:
        a = torch.empty(1000, device="meta")  # 4,000 bytes
        b = a.view(10, 100)  # a view: no new storage
        c = torch.empty(500, dtype=torch.bfloat16, device="meta")  # 1,000 bytes
        del a, b
        d = c + 1  # 1,000 bytes
    assert live.peak == 5000 and live.live == 2000, (live.peak, live.live)
    del c, d


def test_allocator_peak_sees_temporaries():
    torch.set_num_threads(1)
    x = torch.randn(256, 256)

    def fn():
        y = x * 2  # 256 KiB, freed before z
        del y
        (x + 1).sum()

    assert allocator_peak(fn) == pytest.approx(256 * 256 * 4, rel=0.01)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_model_matches_cuda_peak(precision):
    cfg = load_config(DEMO, ["patch.search=[64,64,32]", "model.width=0.25"])
    name = supernet_name(cfg)
    modelled = step_bytes(cfg, name, cfg.patch.search, "search", precision)
    real = _measure(cfg, name, "search", "cuda", precision)
    assert abs(modelled - real) <= 0.15 * real, (modelled, real)
