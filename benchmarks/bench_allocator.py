"""glibc's allocator with its defaults against :func:`voxnas.device.keep_freed_memory`.

PyTorch's CPU tensors come from ``malloc``. With glibc's defaults a training step hands
blocks back to the kernel and faults fresh zeroed pages in again the next step; voxnas keeps
freed blocks of up to 32 MiB in the heap on CPU (``pick_device`` applies it). Each network
runs a training step (forward, backward of ``mean(out^2)``, SGD) in a worker thread, as in a
Tune trial, in a fresh process per measurement, alternating *default* and *kept* over
``--rounds`` rounds (the two back to back in each round; the last column is the median of
the rounds' ratios, steadier on a shared host than a ratio of medians); medians of: step
time, kernel (sys) time and minor page faults per step, peak resident memory. For the demo's
search step, two processes at once (as two trials on 2 cores): summed steps per second.

    .venv/bin/python benchmarks/bench_allocator.py [--rounds 5] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

from _common import spawn_at_once, step_times, write_results

NETS = {  # name: (registry name, channels in, out, kwargs, input shape)
    "V-NAS supernet, demo search (width 0.125, batch 1, 32^3)": (
        "vnas-supernet", 1, 3, {"width": 0.125, "psp": False}, (1, 1, 32, 32, 32),
    ),
    "V-NAS supernet (width 0.125, 64^3)": (
        "vnas-supernet", 1, 3, {"width": 0.125, "psp": True}, (1, 1, 64, 64, 64),
    ),
    "NAS-3D-U-Net supernet (public config, 64^3)": (
        "nas3dunet-supernet", 4, 3, {"init_kernels": 4, "depth": 4, "nodes": 3},
        (1, 4, 64, 64, 64),
    ),
}  # fmt: skip
DEMO = next(iter(NETS))


def _worker(net: str, kept: bool, steps: int, seconds: float, barrier, q) -> None:
    """In a spawned process: ``steps`` timed steps (``seconds`` 0), or as many as fit in
    ``seconds``, after the barrier; puts the figures on ``q``."""
    import resource

    if kept:
        from voxnas.device import keep_freed_memory

        assert keep_freed_memory()
    import torch

    from voxnas.search_spaces.registry import create_model

    torch.set_num_threads(1)
    arch, c_in, c_out, kw, shape = NETS[net]
    out: dict = {}

    def run() -> None:  # in a thread, as Tune runs a function trainable
        torch.manual_seed(0)
        model = create_model(arch, c_in, c_out, **kw)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.randn(*shape)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()

        for _ in range(2):  # warm-up: oneDNN builds its kernels on first use
            step()
        barrier.wait()  # processes measured together start together
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if seconds:
            times = []
            while time.perf_counter() - t0 < seconds:
                times += step_times(step, 1, warmup=0)
        else:
            times = step_times(step, steps, warmup=0)
        r1, n = resource.getrusage(resource.RUSAGE_SELF), len(times)
        out.update(
            step_s=statistics.median(times),
            rate=n / (time.perf_counter() - t0),
            sys_ms=1e3 * (r1.ru_stime - r0.ru_stime) / n,
            faults=(r1.ru_minflt - r0.ru_minflt) / n,
            maxrss_mb=r1.ru_maxrss / 1024,
        )

    th = threading.Thread(target=run)
    th.start()
    th.join()
    q.put(out)


def _alone(net: str, kept: bool, steps: int) -> dict:
    [out] = spawn_at_once(_worker, [(net, kept, steps, 0.0)])
    return out


def _pair_rate(kept: bool, seconds: float) -> float:
    """Summed steps/s of two processes running the demo's step at once."""
    return sum(o["rate"] for o in spawn_at_once(_worker, [(DEMO, kept, 1, seconds)] * 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--pair-seconds", type=float, default=10.0)
    args = ap.parse_args()
    runs: dict[tuple[str, bool], list[dict]] = {}
    pairs: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.rounds):
        for net in NETS:
            for kept in (False, True):
                res = _alone(net, kept, args.steps)
                runs.setdefault((net, kept), []).append(res)
                print(f"round {r} {net} kept={kept}: {res}", file=sys.stderr, flush=True)
        for kept in (False, True):
            pairs[kept].append(_pair_rate(kept, args.pair_seconds))
            print(f"round {r} two at once kept={kept}: {pairs[kept][-1]:.2f}/s", file=sys.stderr)

    def med(net: str, kept: bool, key: str) -> float:
        return statistics.median(x[key] for x in runs[(net, kept)])

    def ratio(net: str, key: str) -> float | str:
        """Median over the rounds of kept / default (the pair ran back to back)."""
        pairs_ = zip(runs[(net, False)], runs[(net, True)], strict=True)
        rs = [k[key] / d[key] for d, k in pairs_ if d[key]]
        return statistics.median(rs) if rs else "-"

    rows = []
    for net in NETS:
        for key, measure, unit in (
            ("step_s", "step time (median)", "s"),
            ("sys_ms", "kernel (sys) time per step", "ms"),
            ("faults", "minor page faults per step", "faults"),
            ("maxrss_mb", "peak resident memory", "MiB"),
        ):
            rows.append({"network": net, "measure": measure, "unit": unit,
                         "glibc default": med(net, False, key),
                         "voxnas (kept)": med(net, True, key),
                         "kept / default": ratio(net, key)})  # fmt: skip
    rows.append({"network": DEMO, "measure": "two processes at once: summed steps per second",
                 "unit": "steps/s", "glibc default": statistics.median(pairs[False]),
                 "voxnas (kept)": statistics.median(pairs[True]),
                 "kept / default": statistics.median(
                     k / d for d, k in zip(pairs[False], pairs[True], strict=True))})  # fmt: skip
    raw = {f"{net} | {'kept' if k else 'default'}": v for (net, k), v in runs.items()}
    raw["pairs"] = {"default": pairs[False], "kept": pairs[True]}
    note = (
        f"CPU training step (fwd + bwd + SGD, fp32, one thread, in a worker thread), glibc "
        f"defaults vs voxnas.device.keep_freed_memory, medians of {args.rounds} rounds of "
        f"{args.steps} steps, a fresh process each"
    )
    print(write_results("allocator", rows, note, {"threads": 1, "raw": raw}))


if __name__ == "__main__":
    main()
