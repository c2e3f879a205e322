"""voxnas vs the public NAS-3D-U-Net code: supernet forward+backward, side by side, one run.

The public implementation (https://github.com/woodywff/nas_3d_unet) is imported from a
checkout given on the command line; none of its code is part of voxnas. Get it with

    git clone https://github.com/woodywff/nas_3d_unet /tmp/nas_3d_unet

    .venv/bin/python benchmarks/bench_public_code.py --public-code /tmp/nas_3d_unet \
        [--threads 1 2] [--rounds 2] [--repeats 3] [--merge]

With ``--merge`` a run for some thread counts keeps the other counts' rows of an earlier run
(same CPU, same public commit) in ``results/public_code.json``, so that each thread count can
be measured in a run of its own.

``--public-code`` also takes a git directory without a work tree (a mirror): its HEAD is
exported to a temporary directory with ``git --git-dir DIR archive HEAD | tar -x``. Without
``--public-code`` (or ``$NAS_3D_UNET_CODE``) the benchmark says so and exits without results.

Configuration: the public code's own search setup, read from its ``config.yml`` and built
as its ``search.py`` builds it (``ShellNet(in_channels=len(all_mods), init_n_kernels,
out_channels=len(labels), depth, n_nodes, normal_w_share, channel_change)``: 4 modalities,
3 outputs, depth 4, 4 initial kernels, 3 nodes, channel change), a 64^3 patch
(``search.patch_shape``), batch 1, fp32, CPU, training mode. voxnas' counterpart is the
``nas3dunet-supernet`` of ``bench_search_spaces.py`` with the same numbers. Both take the
same input and the same loss (mean square of the output) and run forward+backward.

Each measurement runs in a fresh process (multiprocessing spawn) with the given torch
thread count, does ``--warmup`` steps and then ``--repeats`` timed ones; the order of the
two implementations alternates from round to round, and the table gives the median of all
timed steps of all rounds. Peak RSS is the process' peak above its footprint after the
imports (the largest over the rounds). Only ``nas.py`` and the modules it imports
(``prim_ops``, ``cell``, ``genotype``: torch and numpy) are loaded from the public code, so
none of its data-loading dependencies are needed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import step_times, write_results


def _public_model(code: str):
    import yaml

    sys.path.insert(0, code)
    from nas import ShellNet  # the public code, from the checkout

    with open(os.path.join(code, "config.yml")) as f:
        cfg = yaml.safe_load(f)
    s = cfg["search"]
    model = ShellNet(
        in_channels=len(cfg["data"]["all_mods"]),
        init_n_kernels=s["init_n_kernels"],
        out_channels=len(cfg["data"]["labels"]),
        depth=s["depth"],
        n_nodes=s["n_nodes"],
        normal_w_share=s["normal_w_share"],
        channel_change=s["channel_change"],
    )
    alphas = sum(p.numel() for p in model.alphas())
    return model, alphas


def _voxnas_model(spec: dict):
    from voxnas.search_spaces.registry import create_model

    model = create_model(spec["arch"], spec["in"], spec["out"], **spec["kw"])
    return model, sum(p.numel() for p in model.arch_parameters())


def _breakdown(model) -> dict[str, int]:
    """Parameter counts by kind: convolution weights and biases, norms, linear layers, rest."""
    from torch import nn

    out = {"conv weights": 0, "conv biases": 0, "norm": 0, "linear": 0, "other": 0}
    for mod in model.modules():
        for name, p in mod.named_parameters(recurse=False):
            if isinstance(mod, nn.modules.conv._ConvNd):
                out["conv biases" if name == "bias" else "conv weights"] += p.numel()
            elif isinstance(mod, (nn.GroupNorm, nn.modules.batchnorm._NormBase)):
                out["norm"] += p.numel()
            elif isinstance(mod, nn.Linear):
                out["linear"] += p.numel()
            else:
                out["other"] += p.numel()
    return out


def _measure(which: str, spec: dict, threads: int, repeats: int, warmup: int, q) -> None:
    import resource

    import torch

    torch.set_num_threads(threads)
    if which == "public":
        sys.path.insert(0, spec["code"])
        import nas  # noqa: F401  (imports before the RSS baseline, as for voxnas)
    else:
        import voxnas.search_spaces.registry  # noqa: F401
    torch.manual_seed(0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model, alphas = _public_model(spec["code"]) if which == "public" else _voxnas_model(spec)
    model.train()
    x = torch.randn(1, spec["in"], *spec["patch"])

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).float().square().mean().backward()

    times = step_times(step, repeats, warmup)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    params = sum(p.numel() for p in model.parameters())
    q.put(
        {
            "times": times,
            "peak": peak,
            "params": params,
            "alphas": alphas,
            "breakdown": _breakdown(model),
            "threads": torch.get_num_threads(),
        }
    )


def measure(which: str, spec: dict, threads: int, repeats: int, warmup: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_measure, args=(which, spec, threads, repeats, warmup, q))
    p.start()
    out = q.get()
    p.join()
    if p.exitcode:
        raise RuntimeError(f"{which} measurement failed (exit code {p.exitcode})")
    return out


def public_code(arg: str | None, tmp: str) -> tuple[str, str] | None:
    """The directory holding the public ``nas.py`` and its commit (or '?'); None if absent."""
    if not arg:
        return None
    path = Path(arg).expanduser()
    if (path / "nas.py").is_file() and (path / "config.yml").is_file():
        try:
            rev = subprocess.run(
                ["git", "-C", str(path), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            rev = "?"
        return str(path), rev
    if path.is_dir():
        git = ["git", "--git-dir", str(path)]
        try:
            rev = subprocess.run(
                [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
            archive = subprocess.run([*git, "archive", "HEAD"], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        if (Path(tmp) / "nas.py").is_file():
            return tmp, rev
    return None


def merged(rows: list[dict], threads: list[int], rev: str) -> tuple[list[dict], list[int]]:
    """``rows`` plus the earlier rows of other thread counts from the same CPU and commit."""
    import json

    from _common import RESULTS, cpu_model

    path = RESULTS / "public_code.json"
    if not path.is_file():
        return rows, threads
    old = json.loads(path.read_text())
    if old["meta"].get("cpu") != cpu_model() or old["meta"].get("public_commit") != rev:
        print("--merge: results/public_code.json is from another CPU or commit; not merged")
        return rows, threads
    keep = [r for r in old["rows"] if r["threads"] not in threads]
    rows = sorted(keep + rows, key=lambda r: r["threads"])  # stable: order within a count
    return rows, sorted({r["threads"] for r in rows})


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--public-code",
        default=os.environ.get("NAS_3D_UNET_CODE"),
        help="checkout of github.com/woodywff/nas_3d_unet, or a git dir (mirror) of it",
    )
    ap.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--rounds", type=int, default=2, help="processes per implementation")
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per process")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per process")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of other thread counts from results/public_code.json when it "
        "was written on the same CPU for the same public commit (one run per thread count)",
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="nas_3d_unet-") as tmp:
        found = public_code(args.public_code, tmp)
        if found is None:
            print(
                "SKIPPED: the public NAS-3D-U-Net code was not found "
                f"(--public-code {args.public_code!r}). Get it with\n"
                "    git clone https://github.com/woodywff/nas_3d_unet /tmp/nas_3d_unet\n"
                "and pass --public-code /tmp/nas_3d_unet (a git mirror directory works too)."
            )
            return
        code, rev = found
        import yaml

        cfg = yaml.safe_load((Path(code) / "config.yml").read_text())
        s = cfg["search"]
        patch = (s["patch_shape"],) * 3
        n_in, n_out = len(cfg["data"]["all_mods"]), len(cfg["data"]["labels"])
        spec = {
            "code": code,
            "arch": "nas3dunet-supernet",
            "in": n_in,
            "out": n_out,
            "patch": patch,
            "kw": {
                "init_kernels": s["init_n_kernels"],
                "depth": s["depth"],
                "nodes": s["n_nodes"],
                "channel_change": s["channel_change"],
            },
        }
        config = (
            f"{n_in} modalities, {n_out} outputs, depth {s['depth']}, "
            f"{s['init_n_kernels']} initial kernels, {s['n_nodes']} nodes, "
            f"{patch[0]}^3 patch, batch 1, fp32, CPU"
        )
        print(f"public code {rev} from {args.public_code}; {config}", flush=True)
        rows, results = [], {}
        for threads in args.threads:
            res: dict[str, list[dict]] = {"public": [], "voxnas": []}
            for r in range(args.rounds):
                order = ("public", "voxnas") if r % 2 == 0 else ("voxnas", "public")
                for which in order:
                    out = measure(which, spec, threads, args.repeats, args.warmup)
                    assert out["threads"] == threads, out["threads"]
                    res[which].append(out)
                    print(
                        f"threads {threads} round {r} {which}: "
                        + " ".join(f"{t:.3f}" for t in out["times"])
                        + f" s, peak {out['peak']:.0f} MiB",
                        flush=True,
                    )
            results[threads] = res
            med = {}
            for which, label in (
                ("public", "public nas_3d_unet ShellNet"),
                ("voxnas", "voxnas nas3dunet-supernet"),
            ):
                times = [t for o in res[which] for t in o["times"]]
                med[which] = statistics.median(times)
                o = res[which][0]
                rows.append(
                    {
                        "implementation": label,
                        "threads": threads,
                        "fwd+bwd (s)": med[which],
                        "min-max": f"{min(times):.3g}-{max(times):.3g}",
                        "steps": f"{args.rounds}x{args.repeats}",
                        "peak RSS (MiB)": max(x["peak"] for x in res[which]),
                        "parameters (of which alphas)": f"{o['params']:,} ({o['alphas']})",
                    }
                )
            per_round = [
                statistics.median(p["times"]) / statistics.median(v["times"])
                for p, v in zip(res["public"], res["voxnas"])
            ]
            rows.append(
                {
                    "implementation": "ratio public / voxnas",
                    "threads": threads,
                    # each round timed both in turn: the median of the rounds' ratios (the
                    # ratio of pooled medians could fall outside the rounds' range)
                    "fwd+bwd (s)": statistics.median(per_round),
                    "min-max": f"{min(per_round):.3g}-{max(per_round):.3g}",
                    "steps": "",
                    "peak RSS (MiB)": "",
                    "parameters (of which alphas)": "",
                }
            )
        pub, vox = results[args.threads[0]]["public"][0], results[args.threads[0]]["voxnas"][0]
        same = [k for k in pub["breakdown"] if pub["breakdown"][k] == vox["breakdown"][k]]
        differ = ", ".join(
            f"{k} {pub['breakdown'][k]:,} vs {vox['breakdown'][k]:,}"
            for k in pub["breakdown"]
            if k not in same
        )
        note = (
            "NAS-3D-U-Net supernet, public code (github.com/woodywff/nas_3d_unet "
            f"{rev[:7]}) vs voxnas, forward+backward, {config}; a fresh process per "
            f"measurement, the two alternating in order, {args.warmup} warm-up step(s) per "
            "process; steps: processes x timed steps per implementation, fwd+bwd: their median, "
            "min-max: the fastest and slowest step (for the ratio row: the median, smallest "
            "and largest of the rounds' ratios of medians). Parameters: "
            f"{pub['params']:,} public vs {vox['params']:,} voxnas, the same in "
            f"{', '.join(same) or 'no kind'}; they differ in {differ or 'nothing'} "
            f"(public vs voxnas; 'other' is the alphas: {pub['alphas']} vs {vox['alphas']})."
        )
        threads = list(args.threads)
        if args.merge:
            rows, threads = merged(rows, threads, rev)
        print(
            write_results(
                "public_code",
                rows,
                note,
                extra={
                    "public_commit": rev,
                    "threads": threads,
                    "config": config,
                    "parameters": {"public": pub["breakdown"], "voxnas": vox["breakdown"]},
                },
            )
        )
        print(note)


if __name__ == "__main__":
    main()
