"""V-NAS (seed 000): an AH-Net-like encoder-decoder with a 2D/3D/P3D choice per cell.

Input ``(B, C, X, Y, Z)``, Z the slice axis. Stem (seed 000 Fig. 1): 7x7x1 conv, stride
(2,2,1), then 1x1x3 conv; 2x2x2 max-pool. Encoder: ResNet-50 bottleneck cells in the layout
3,4,6,3 (L = 16); cell = 1x1x1 reduce -> [X; Y] (the searched pair, X strided at the first cell
of stages 2-4) + residual. Decoder (AH-Net): five levels, each a 1x1x1 transition and trilinear
up-sampling added to the encoder feature of that scale, then a searched dense block (B = 5)
whose layers share the block's choice. Pyramid volumetric pooling (optional) and a 1x1x1 head.

Width multiplier ``width`` scales every channel count (1.0 = ResNet-50: 64..2048).
Shape rule: X and Y divisible by 32, Z by 16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from voxnas.search_spaces.genotypes import (
    ENCODER_LAYOUT,
    N_DECODER,
    N_ENCODER,
    VNASGenotype,
    alpha_probs,
)
from voxnas.search_spaces.layers import BatchNorm3d, Conv3d, conv_bn_relu, upsample
from voxnas.search_spaces.mixed import MixedOp, SearchableNet
from voxnas.search_spaces.ops import VNAS_DECODER_OPS, VNAS_ENCODER_OPS
from voxnas.shape_rules import check_patch

__all__ = ["VNAS"]

ENC_NAMES = tuple(VNAS_ENCODER_OPS)
DEC_NAMES = tuple(VNAS_DECODER_OPS)


class EncoderCell(nn.Module):
    def __init__(self, c_in: int, planes: int, stride: int, choices: tuple[str, ...]):
        super().__init__()
        self.reduce = conv_bn_relu(c_in, planes, (1, 1, 1))
        self.branch = MixedOp({n: VNAS_ENCODER_OPS[n](planes, 4 * planes, stride) for n in choices})
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == 4 * planes
            else nn.Sequential(
                Conv3d(c_in, 4 * planes, 1, stride=stride, bias=False), BatchNorm3d(4 * planes)
            )
        )

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        return F.relu(self.branch(self.reduce(x), w) + self.shortcut(x))


class DenseBlock(nn.Module):
    """Dense layers (1x1x1 bottleneck -> searched [X; Y] -> ``growth`` channels), concatenated."""

    def __init__(self, c_in: int, growth: int, n_layers: int, choices: tuple[str, ...]):
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(n_layers):
            c = c_in + i * growth
            self.layers.append(
                nn.ModuleDict(
                    {
                        "bottleneck": conv_bn_relu(c, 4 * growth, (1, 1, 1)),
                        "pair": MixedOp(
                            {n: VNAS_DECODER_OPS[n](4 * growth, growth) for n in choices}
                        ),
                    }
                )
            )
        self.out_channels = c_in + n_layers * growth

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer["pair"](layer["bottleneck"](x), w)], dim=1)
        return x


class PyramidPooling(nn.Module):
    """Pyramid volumetric pooling (AH-Net): in-plane max-pools at 4 scales, each to one channel."""

    def __init__(self, c_in: int, scales: tuple[int, ...] = (2, 4, 8, 16)):
        super().__init__()
        self.scales = scales
        self.convs = nn.ModuleList(Conv3d(c_in, 1, 1) for _ in scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        outs = [x]
        # each scale pools the previous scale's map where its window is a whole multiple of
        # the previous one (max over non-overlapping windows composes exactly): the full-size
        # input is read once instead of once per scale
        src, done = x, (1, 1, 1)
        for k, conv in zip(self.scales, self.convs):
            kk = (min(k, size[0]), min(k, size[1]), 1)
            if any(a % b for a, b in zip(kk, done)):
                src, done = x, (1, 1, 1)
            step = tuple(a // b for a, b in zip(kk, done))
            if step != (1, 1, 1):  # a window clamped to the last one's size: no copy
                src = F.max_pool3d(src, step, step)
            done = kk
            outs.append(upsample(conv(src), size))
        return torch.cat(outs, dim=1)


class VNAS(SearchableNet):
    """Supernet (``genotype=None``; ``mode`` ``search`` or ``mix``) or fixed network."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        width: float = 1.0,
        genotype: VNASGenotype | None = None,
        mode: str = "search",
        psp: bool = True,
        dense_layers: int = 2,
    ):
        super().__init__()
        if mode not in ("search", "mix"):
            raise ValueError(f"mode must be 'search' or 'mix', got {mode!r}")
        self.genotype, self.mode = genotype, mode if genotype is None else "fixed"
        c = max(4, round(64 * width))
        growth = max(2, round(32 * width))

        def enc(i):
            return ENC_NAMES if genotype is None else (ENC_NAMES[genotype.encoder[i]],)

        def dec(b):
            return DEC_NAMES if genotype is None else (DEC_NAMES[genotype.decoder[b]],)

        self.stem = nn.Sequential(
            conv_bn_relu(in_channels, c, (7, 7, 1), stride=(2, 2, 1)), conv_bn_relu(c, c, (1, 1, 3))
        )
        self.pool = nn.MaxPool3d(2, 2)
        self.encoder = nn.ModuleList()
        c_in, i = c, 0
        skip_channels = [c, c]  # conv_x, pool_x
        for stage, n in enumerate(ENCODER_LAYOUT):
            planes = c * 2**stage
            for j in range(n):
                stride = 2 if stage > 0 and j == 0 else 1
                self.encoder.append(EncoderCell(c_in, planes, stride, enc(i)))
                c_in, i = 4 * planes, i + 1
            skip_channels.append(c_in)
        # decoder targets, deepest first: fm3, fm2, fm1, pool_x, conv_x
        targets = [skip_channels[4], skip_channels[3], skip_channels[2], c, c]
        self.transitions, self.dense = nn.ModuleList(), nn.ModuleList()
        prev = skip_channels[-1]
        for b, tgt in enumerate(targets):
            self.transitions.append(conv_bn_relu(prev, tgt, (1, 1, 1)))
            block = DenseBlock(tgt, growth, dense_layers, dec(b))
            self.dense.append(block)
            prev = block.out_channels
        self.psp = PyramidPooling(prev) if psp else None
        self.head = Conv3d(prev + (4 if psp else 0), out_channels, 1)
        if genotype is None:
            self.alpha_encoder = nn.Parameter(
                torch.zeros(N_ENCODER, 3), requires_grad=mode == "search"
            )
            self.alpha_decoder = nn.Parameter(
                torch.zeros(N_DECODER, 3), requires_grad=mode == "search"
            )

    # ---- architecture parameters ----------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_encoder, self.alpha_decoder] if self.genotype is None else []

    def alphas(self) -> dict[str, torch.Tensor]:
        if self.genotype is not None:
            return {}
        return {
            "encoder": self.alpha_encoder.detach().cpu(),
            "decoder": self.alpha_decoder.detach().cpu(),
        }

    def alpha_probs(self) -> dict[str, float]:
        """``alpha/enc07/p3d`` -> softmax probability, for tracking."""
        return alpha_probs("vnas", {k: v.numpy() for k, v in self.alphas().items()})

    @staticmethod
    def check_shape(shape: tuple[int, ...]) -> None:
        check_patch("vnas", shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_shape(x.shape)
        we = wd = None
        if self.genotype is None:
            we = F.softmax(self.alpha_encoder, dim=-1)
            wd = F.softmax(self.alpha_decoder, dim=-1)
        conv_x = self.stem(x)
        h = pool_x = self.pool(conv_x)
        feats = []
        for i, cell in enumerate(self.encoder):
            h = cell(h, None if we is None else we[i])
            if i + 1 in (3, 7, 13):
                feats.append(h)
        skips = [feats[2], feats[1], feats[0], pool_x, conv_x]
        for b, (trans, block, skip) in enumerate(zip(self.transitions, self.dense, skips)):
            h = upsample(trans(h), skip.shape[2:]) + skip
            h = block(h, None if wd is None else wd[b])
        if self.psp is not None:
            h = self.psp(h)
        return upsample(self.head(h), x.shape[2:])
