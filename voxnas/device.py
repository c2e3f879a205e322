"""Device choice at run time: CUDA when available (mixed precision and cuDNN autotuning only
there), CPU fp32 otherwise. One code path for both.

On CPU the process's allocator is also set for training (:func:`keep_freed_memory`): PyTorch's
CPU tensors come straight from the C library's ``malloc``, and a training step frees and asks
again for the same activation sizes every iteration."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os

import torch

__all__ = ["autocast", "keep_freed_memory", "pick_device"]

# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc keep freed blocks of up to 32 MiB in the heap for the next step, instead of
    handing them back to the kernel and faulting fresh zeroed pages in again. With glibc's
    defaults a V-NAS / NAS-3D-U-Net supernet training step on CPU took 5,000-25,000 page
    faults and 13-55 ms of kernel time at 64^3 and at 32^3 batch 2, ~970 and 2 ms at the
    demo's 32^3 batch 1 (medians of three runs of ``benchmarks/bench_allocator.py``); with
    this, 77-680 and under 10 ms. The V-NAS step at 32^3 batch 2 ran 9-14% faster in both
    runs of it; at the demo's batch 1 and at 64^3 the steps' times moved within the host's
    noise (0.95-1.08x). Peak resident memory was never higher: a process holds its step's
    peak anyway, and larger blocks are still mapped and unmapped. Returns whether it applied:
    only where the C library is glibc (not musl, macOS or Windows); once per process."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        libc = ctypes.CDLL("libc.so.6")
    except (ValueError, OSError, AttributeError):
        return False
    settings = (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX),  # fixed: no dynamic threshold
        (_M_TRIM_THRESHOLD, 1 << 30),  # do not shrink the heap after each step
        (_M_TOP_PAD, 64 << 20),  # grow it in 64 MiB steps
    )
    return all(libc.mallopt(param, value) == 1 for param, value in settings)


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        torch.backends.cudnn.benchmark = True
        return torch.device("cuda")
    keep_freed_memory()
    return torch.device("cpu")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA GPUs that support it (no loss scaling needed); fp32 elsewhere,
    including CPUs, where bf16 is ~50x slower than fp32 on this project's machines."""
    if device.type != "cuda" or not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16)
