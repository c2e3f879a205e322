"""The GPU the driver sizes ``ray.gpus_per_trial: auto`` for, read without a CUDA context.

NVML (``pynvml``) reads the memory and compute capability of every GPU without touching
CUDA, so the driver process holds no context (~0.3-0.5 GiB) on GPU 0 for the whole run.
Without ``pynvml``, ``torch.cuda`` is the fallback (it does create a context). The smallest
GPU is reported: trials may land on any of them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GpuInfo", "local_gpu"]


@dataclass(frozen=True)
class GpuInfo:
    """The smallest local GPU: total bytes, whether it runs bf16 autocast, how it was read."""

    name: str
    total_bytes: int
    bf16: bool
    source: str  # "nvml" or "torch.cuda"

    def describe(self) -> str:
        return f"{self.name}, {self.total_bytes / 2**30:.1f} GiB (read via {self.source})"


def _nvml() -> GpuInfo | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            major, _ = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            total = int(pynvml.nvmlDeviceGetMemoryInfo(h).total)
            name = name.decode() if isinstance(name, bytes) else str(name)
            gpus.append(GpuInfo(name, total, major >= 8, "nvml"))  # bf16: Ampere and later
        return min(gpus, key=lambda g: g.total_bytes) if gpus else None
    finally:
        pynvml.nvmlShutdown()


def _torch_cuda() -> GpuInfo | None:
    import torch

    if not torch.cuda.is_available():
        return None
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    small = min(props, key=lambda p: p.total_memory)
    return GpuInfo(small.name, int(small.total_memory), small.major >= 8, "torch.cuda")


def local_gpu() -> GpuInfo | None:
    """The smallest GPU this process sees (NVML first, then ``torch.cuda``); None if none."""
    return _nvml() or _torch_cuda()
