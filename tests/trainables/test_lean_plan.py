"""Which MixedOps a memory-lean supernet recomputes (``model.lean_budget``): the largest first,
the fewest that bring the modelled step within the budget, and the real CPU peak with them."""

import pytest
import torch

from tests.tiny import ROOT
from voxnas.config import load_config
from voxnas.search_spaces.mixed import MixedOp
from voxnas.search_spaces.recompute_plan import MixedOpCost, mixed_op_costs, pick
from voxnas.search_spaces.registry import create_model
from voxnas.trainables.footprint import step_bytes
from voxnas.trainables.models import build_model, cost_channels
from voxnas.trainables.step_probe import measured_step_peak

NIH = ROOT / "configs" / "vnas_nih.yaml"
# bench_memory_lean.py's case: V-NAS width 1/8 at 64x64x32, where a budget of 1.4 is reached
# by recomputing a few MixedOps (every MixedOp: 1.1x the all-3D network; none: 1.75x)
BENCH = ["model.width=0.125", "patch.search=[64,64,32]", "patch.train=[64,64,32]",
         "patch.test=[64,64,32]", "model.memory_lean=true"]  # fmt: skip


def _lean(model) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, MixedOp) and m.memory_lean]


def _mixed(model) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, MixedOp) and len(m.ops) > 1]


def test_pick_takes_the_largest_first_until_enough_is_freed():
    costs = [MixedOpCost("a", (10, 9), 5), MixedOpCost("b", (30, 5), 50),
             MixedOpCost("c", (20, 2), 1), MixedOpCost("d", (20, 1), 2)]  # fmt: skip
    assert pick(costs, (0, 0)) == []
    assert pick(costs, (25, 0)) == ["b"]
    assert pick(costs, (31, 0)) == ["b", "c"]  # the cheaper of two equals first
    assert pick(costs, (25, 8)) == ["b", "c", "d"]  # until both precisions have enough
    assert pick(costs, (71, 0)) == ["b", "c", "d", "a"]
    assert pick(costs, (10**9, 0)) == ["b", "c", "d", "a"]


def test_costs_name_every_searched_mixed_op_and_grow_with_the_patch():
    with torch.device("meta"):
        model = create_model("vnas-supernet", 1, 3, width=1 / 16, psp=False)
        small = mixed_op_costs(model, torch.zeros(1, 1, 32, 32, 16), ("fp32", "bf16"))
        large = mixed_op_costs(model, torch.zeros(1, 1, 64, 32, 16), ("fp32", "bf16"))
    assert [c.name for c in small] == _mixed(model) and len(small) == 26
    for a, b in zip(small, large):
        assert 0 < a.kept[0] < b.kept[0] and 0 < a.flops < b.flops, (a, b)
        assert a.kept[1] > 0, a
    # bf16 keeps the convolutions' inputs in bf16 (and, per MixedOp, its weights' bf16 copies)
    assert sum(c.kept[1] for c in large) < 0.8 * sum(c.kept[0] for c in large)
    # twice the voxels, twice the fp32 bytes and FLOPs (the deepest cells' few voxels aside;
    # bf16 adds each MixedOp's weight copies, which do not grow)
    total = sum(c.kept[0] for c in small)
    assert sum(c.kept[0] for c in large) == pytest.approx(2 * total, rel=0.1)
    assert sum(c.flops for c in large) == pytest.approx(2 * sum(c.flops for c in small), rel=0.1)
    assert not _lean(model)  # the flags are put back


@pytest.mark.integration
def test_budget_recomputes_the_fewest_within_it_and_holds_on_the_cpu():
    torch.set_num_threads(1)
    cfg = load_config(NIH, BENCH)
    patch = cfg.patch.search
    model = build_model(cfg, "vnas-supernet", *cost_channels(cfg))
    lean, mixed = _lean(model), _mixed(model)
    assert 0 < len(lean) < len(mixed) // 2
    for precision in ("fp32", "bf16"):
        ref = step_bytes(cfg, "3D/3D", patch, "retrain", precision)
        lean_bytes = step_bytes(cfg, "vnas-supernet", patch, "search", precision)
        assert lean_bytes <= cfg.model.lean_budget * ref, precision
    # tighter budgets recompute more, and more of the same; null all; a loose one none
    tighter = build_model(load_config(NIH, [*BENCH, "model.lean_budget=1.25"]), "vnas-supernet",
                          *cost_channels(cfg))  # fmt: skip
    assert set(lean) < set(_lean(tighter))
    every = load_config(NIH, [*BENCH, "model.lean_budget=null"])
    assert _lean(build_model(every, "vnas-supernet", 1, 3)) == mixed
    loose = load_config(NIH, [*BENCH, "model.lean_budget=3"])
    assert _lean(build_model(loose, "vnas-supernet", 1, 3)) == []
    # the real CPU step: the memory model's figure within 5%, the 1.5x of the
    # largest single-choice network kept (measured 1.36x with budget 1.4)
    torch.manual_seed(0)
    real = measured_step_peak(cfg, model, "search")
    modelled = step_bytes(cfg, "vnas-supernet", patch, "search", foreach=False)
    assert abs(modelled - real) <= 0.05 * real, (modelled, real)
    single = measured_step_peak(cfg, build_model(cfg, "3D/3D", 1, 3), "retrain")
    assert real <= 1.45 * single, (real, single)


def test_budget_out_of_reach_recomputes_every_mixed_op():
    """demo.yaml: even every MixedOp recomputed holds 1.6x the all-3D network's step. The
    plan traces the channels the network is built with (two MR sequences, a binary task),
    not ``voxnas cost``'s (1 in, 3 out: the test below)."""
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["model.memory_lean=true"])
    model = build_model(cfg, "vnas-supernet", 2, 2)
    assert _lean(model) == _mixed(model)


@pytest.mark.integration
def test_nas3dunet_plan_runs_inside_the_memory_model():
    """The memory model builds networks under a meta device context: the plan (and the
    NAS-3D-U-Net budget's uniform-alpha stand-in) must build there too."""
    sets = ["model.init_kernels=2", "model.depth=2", "patch.search=[16,16,16]",
            "patch.train=[16,16,16]", "patch.test=[16,16,16]"]  # fmt: skip
    config = ROOT / "configs" / "nas3dunet_brats.yaml"
    plain = load_config(config, sets)
    lean = load_config(config, [*sets, "model.memory_lean=true"])
    patch = plain.patch.search
    assert step_bytes(lean, "nas3dunet-supernet", patch, "search") < step_bytes(
        plain, "nas3dunet-supernet", patch, "search"
    )
    model = build_model(lean, "nas3dunet-supernet", *cost_channels(lean))
    assert 0 < len(_lean(model)) <= len(_mixed(model))


def test_voxnas_cost_prints_the_lean_memory_and_how_many_recompute():
    from click.testing import CliRunner

    from voxnas.cli import main

    demo = ROOT / "configs" / "demo.yaml"
    args = ["cost", str(demo), "--arch", "vnas-supernet", "--set", "model.memory_lean=true"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "memory_lean: 26 of 26 supernet MixedOps recompute (lean_budget 1.4 out of reach" in out
    cfg = load_config(demo, ["model.memory_lean=true"])
    mib = step_bytes(cfg, "vnas-supernet", cfg.patch.search, "search") / 2**20
    size = "x".join(map(str, cfg.patch.search))
    assert f"| vnas-supernet | search | {size} | {mib:.1f} MiB |" in out, out
    assert "Projected time of one fold" in out
    model = build_model(cfg, "vnas-supernet", *cost_channels(cfg))
    assert _lean(model) == _mixed(model)


def test_plan_is_kept_on_disk_and_traced_again_when_unreadable_or_the_code_changes(
    tmp_path, monkeypatch
):
    """A second process (here: the per-process cache cleared) reads the plan instead of
    tracing it again; a broken file is traced again and rewritten; another code fingerprint
    or config is another file; without a workdir nothing is written."""
    from voxnas.search_spaces.registry import resolve_architecture
    from voxnas.trainables import lean_plan

    traces = []

    def traced(cfg, name, in_ch, out_ch):
        traces.append(name)
        return ("cell0.op", "cell1.op")

    monkeypatch.setattr(lean_plan, "_traced_plan", traced)
    arch = resolve_architecture("vnas-supernet")
    cfg = load_config(ROOT / "configs" / "demo.yaml", [f"workdir={tmp_path}", *BENCH])
    path = lean_plan.plan_file(cfg, arch.name, 1, 3)

    def plan(c=cfg):
        lean_plan._plan.cache_clear()
        return lean_plan.recomputed(c, arch, 1, 3)

    assert plan() == ("cell0.op", "cell1.op") and len(traces) == 1 and path.is_file()
    assert plan() == ("cell0.op", "cell1.op") and len(traces) == 1  # read, not traced
    path.write_text('{"recomputed": ')  # a torn write
    assert plan() == ("cell0.op", "cell1.op") and len(traces) == 2
    assert plan() == ("cell0.op", "cell1.op") and len(traces) == 2  # rewritten whole
    other = load_config(ROOT / "configs" / "demo.yaml", [f"workdir={tmp_path}", *BENCH,
                                                          "model.lean_budget=1.2"])  # fmt: skip
    assert lean_plan.plan_file(other, arch.name, 1, 3) != path
    with monkeypatch.context() as m:
        m.setattr(lean_plan.torch, "__version__", "0.0-other")
        lean_plan._code_fingerprint.cache_clear()
        assert lean_plan.plan_file(cfg, arch.name, 1, 3) != path
    lean_plan._code_fingerprint.cache_clear()  # no fingerprint of the fake version stays cached
    assert lean_plan.plan_file(cfg, arch.name, 1, 3) == path
    missing = load_config(ROOT / "configs" / "demo.yaml", [f"workdir={tmp_path / 'none'}", *BENCH])
    plan(missing)
    assert not (tmp_path / "none").exists()  # voxnas cost before any run creates nothing
    lean_plan._plan.cache_clear()
