"""Device handling shared by training and inference: device choice, moving batches, mixed precision,
the forward pass convention and peak memory."""

from __future__ import annotations


def pick_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda asked for, but no CUDA device is visible")
    return torch.device(name)


def to_device(batch, device):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast(device, amp: bool, amp_dtype: str = "fp16"):
    """Mixed precision on CUDA when ``amp`` (``amp_dtype`` fp16 or bf16); a no-op context on the CPU."""
    import torch

    enabled = bool(amp) and device.type == "cuda"
    dtype = torch.bfloat16 if str(amp_dtype) == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def forward(model, batch, regression: bool):
    """Model outputs as float32: (B,) for regression, (B, n_out) logits otherwise."""
    out = model(batch).float()
    return out[:, 0] if regression else out


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def model_device(model):
    """The device of a model's parameters (or buffers); the CPU for a model with neither (a fixed rule)."""
    import torch

    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")
