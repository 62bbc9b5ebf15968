"""Where the model runs: resolve Settings.device ('auto', 'cpu', 'cuda', 'cuda:N') and set CPU threads."""
from __future__ import annotations

import os

import torch


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """'auto' (or None: the XPVAE_DEVICE setting) gives CUDA when present, else CPU. Asking for CUDA on a
    machine without it is an error rather than a silent fallback, so a GPU job never crawls on the CPU."""
    if isinstance(spec, torch.device):
        return spec
    if spec is None:
        from shared.settings import get_settings
        spec = get_settings().device
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} requested (XPVAE_DEVICE) but CUDA is not available here")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {spec!r} requested but only {torch.cuda.device_count()} GPU(s) present")
        return dev
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {spec!r}")


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads: n, else OMP_NUM_THREADS when the operator set it (a worker sharing a
    machine), else the CPUs this process may use. Returns the count in force."""
    if n is None and os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        n = int(os.environ["OMP_NUM_THREADS"])
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            n = os.cpu_count() or 1
    n = max(1, int(n))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def describe(device: torch.device) -> str:
    """A one-line description for logs and benchmark headers."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)}), torch {torch.__version__}"
    return f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}"
