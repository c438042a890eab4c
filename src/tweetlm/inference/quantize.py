"""Weight-only int8 quantization for decoding on a CPU (layer L3, inference).

Decoding a token reads every weight once, so on a CPU the step time follows the weights' bytes. Each linear layer
keeps its weight as int8 per output channel (symmetric: ``w ~ q * scale``, ``scale = max|w_row| / 127``) and its
activations in bfloat16; the product runs in PyTorch's fused int8-weight kernel (``torch._weight_int8pack_mm``,
the kernel gpt-fast and torchao use on CPU). Activations are not quantized: quantizing them as well (PyTorch's
dynamic quantization) cost SmolLM2-135M +0.6 bits per byte on held-out posts, almost all of it at the
feed-forward down projection whose inputs carry outliers, while weight-only int8 costs +0.004
(``benchmarks/results/inference_cpu2_202612.md``).
"""

from __future__ import annotations

import torch
from torch import nn


class Int8WeightLinear(nn.Module):
    """``y = x @ (q * scale).T`` for ``x`` ``(..., in_features)`` (any float dtype; computed in bfloat16),
    ``q`` int8 ``(out_features, in_features)``, ``scale`` bfloat16 ``(out_features,)``. No bias."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Int8WeightLinear takes linear layers without bias (the tweetlm model has none)")
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.register_buffer("q", (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16), self.q, self.scale)
        return y.view(*shape[:-1], self.out_features)


def quantize_int8_weights(model: nn.Module) -> nn.Module:
    """Turn ``model`` (in place) to bfloat16 with every ``nn.Linear`` an ``Int8WeightLinear``; a weight tied to
    an embedding stays as the embedding's bfloat16 copy there. CPU only. Returns ``model``."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("precision int8 runs on the CPU only (its kernel has no GPU version); use bfloat16")
    model.to(torch.bfloat16)

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8WeightLinear(child))
            else:
                swap(child)

    swap(model)
    return model
