"""NAS-3D-U-Net (seed 002 section 2.4, Fig. 3-6): a U-Net of searched downward and upward
cells. Defaults follow the public code where the paper is silent (see module genotypes).

Stems P0 (1x1x1, stride 1) and P1 (3x3x3, stride 2), each conv + GroupNorm, with m*n kernels
(``init_kernels * nodes``). ``depth`` downward cells (node width doubling per cell with
``channel_change``), ``depth + 1`` upward cells (halving), a 1x1x1 head (dropout 0.1). A cell
takes X0 (the older, larger input) and X1, preprocesses both with ReLU -> 1x1x1 conv -> GN
(X0 strided in downward cells), and concatenates its nodes; a node sums its hybrid modules.
On CPU the same-kind candidates of the edges that read one state run as one convolution
(:mod:`voxnas.search_spaces.edge_stack`).

Alphas, shared by all cells of a type (DARTS): ``down_special`` (DHM rows), ``down_normal``,
``up_special`` (UHM rows), ``up_normal`` (NHM rows), one row per edge of that kind, in the
edge order of :func:`cell_edges`. The output is logits; sigmoid (BraTS regions) or softmax is
applied by the loss and at prediction. Each spatial size must be a multiple of 2^(depth+1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from voxnas.search_spaces.genotypes import NAS3DGenotype, alpha_probs, cell_edges
from voxnas.search_spaces.layers import Conv3d, group_norm
from voxnas.search_spaces.mixed import MixedOp, SearchableNet, edge_groups, stack_edges
from voxnas.search_spaces.ops import NAS3D_DOWN_OPS, NAS3D_NORMAL_OPS, NAS3D_UP_OPS
from voxnas.shape_rules import check_patch

__all__ = ["NAS3DUNet"]

ALPHA_KEYS = ("down_special", "down_normal", "up_special", "up_normal")


def _table(kind: str, special: bool) -> dict:
    if not special:
        return NAS3D_NORMAL_OPS
    return NAS3D_DOWN_OPS if kind == "down" else NAS3D_UP_OPS


class Cell(nn.Module):
    def __init__(
        self, kind: str, n_nodes: int, c0: int, c1: int, c_node: int, genes: tuple | None = None
    ):
        super().__init__()
        self.kind, self.n_nodes = kind, n_nodes
        self.pre0 = nn.Sequential(
            nn.ReLU(),
            Conv3d(c0, c_node, 1, stride=2 if kind == "down" else 1, bias=False),
            group_norm(c_node),
        )
        self.pre1 = nn.Sequential(nn.ReLU(), Conv3d(c1, c_node, 1, bias=False), group_norm(c_node))
        chosen = (
            None
            if genes is None
            else {(n, g.input): g.op for n, node in enumerate(genes) for g in node}
        )
        self.edges = nn.ModuleDict()
        self.plan: list[tuple[int, int, bool, int, str]] = []  # node, input, special, row, key
        rows = {True: 0, False: 0}
        for node, inp, special in cell_edges(kind, n_nodes):
            row = rows[special]
            rows[special] += 1
            if chosen is not None and (node, inp) not in chosen:
                continue
            table = _table(kind, special)
            names = list(table) if chosen is None else [chosen[(node, inp)]]
            key = f"n{node}_i{inp}"
            self.edges[key] = MixedOp({n: table[n](c_node) for n in names})
            self.plan.append((node, inp, special, row, key))
        self.out_channels = n_nodes * c_node
        # per state: the edges reading it, and which of their candidates run as one conv
        self.readers = [[entry for entry in self.plan if entry[1] == s] for s in range(n_nodes + 1)]
        self.stacks = [
            edge_groups([list(self.edges[e[4]].ops) for e in readers]) for readers in self.readers
        ]

    def forward(self, x0, x1, w_special=None, w_normal=None):
        def weight(special, row):
            return None if w_special is None else (w_special if special else w_normal)[row]

        states = [self.pre0(x0), self.pre1(x1)]
        given: dict[str, dict[int, torch.Tensor]] = {}

        def read(s: int) -> None:  # state s exists: its edges' stacked candidates, once
            if s < len(self.readers) and self.stacks[s] and w_special is not None:
                readers = self.readers[s]
                outs = stack_edges(
                    [self.edges[e[4]] for e in readers],
                    self.stacks[s],
                    states[s],
                    [weight(e[2], e[3]) for e in readers],
                )
                given.update((e[4], out) for e, out in zip(readers, outs))

        read(0)
        read(1)
        for node in range(self.n_nodes):
            total = None  # not 0: 0 + tensor would be a pass of its own
            for n, inp, special, row, key in self.plan:
                if n == node:
                    out = self.edges[key](states[inp], weight(special, row), given.pop(key, None))
                    total = out if total is None else total + out
            states.append(total)
            read(len(states) - 1)
        return torch.cat(states[2:], dim=1)


class NAS3DUNet(SearchableNet):
    """Supernet (``genotype=None``; ``mode`` ``search`` or ``mix``) or fixed network."""

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        init_kernels: int = 4,
        depth: int = 4,
        nodes: int = 3,
        channel_change: bool = True,
        genotype: NAS3DGenotype | None = None,
        mode: str = "search",
    ):
        super().__init__()
        if depth < 2:
            raise ValueError("depth must be at least 2")
        if genotype is not None and genotype.n_nodes != nodes:
            raise ValueError(f"genotype has {genotype.n_nodes} nodes, network {nodes}")
        self.genotype, self.mode = genotype, mode if genotype is None else "fixed"
        self.depth, self.nodes = depth, nodes
        c0 = c1 = nodes * init_kernels
        c_node = init_kernels
        self.stem0 = nn.Sequential(Conv3d(in_channels, c0, 1, bias=False), group_norm(c0))
        self.stem1 = nn.Sequential(
            Conv3d(in_channels, c1, 3, stride=2, padding=1, bias=False), group_norm(c1)
        )
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        skip_channels = [c0, c1]
        for _ in range(depth):
            c_node = 2 * c_node if channel_change else c_node
            cell = Cell("down", nodes, c0, c1, c_node, None if genotype is None else genotype.down)
            self.down.append(cell)
            c0, c1 = c1, cell.out_channels
            skip_channels.append(c1)
        skip_channels.pop()
        for _ in range(depth + 1):
            cell = Cell(
                "up",
                nodes,
                skip_channels.pop(),
                c1,
                c_node,
                None if genotype is None else genotype.up,
            )
            self.up.append(cell)
            c1 = cell.out_channels
            c_node = c_node // 2 if channel_change else c_node
        self.head = nn.Sequential(nn.Dropout3d(0.1), Conv3d(c1, out_channels, 1))
        if genotype is None:
            sizes = {
                "down_special": (2 * nodes, len(NAS3D_DOWN_OPS)),
                "down_normal": (nodes * (nodes - 1) // 2, len(NAS3D_NORMAL_OPS)),
                "up_special": (nodes, len(NAS3D_UP_OPS)),
                "up_normal": (nodes * (nodes + 1) // 2, len(NAS3D_NORMAL_OPS)),
            }
            for k, shape in sizes.items():
                self.register_parameter(
                    f"alpha_{k}", nn.Parameter(torch.zeros(shape), requires_grad=mode == "search")
                )

    def arch_parameters(self) -> list[nn.Parameter]:
        return [getattr(self, f"alpha_{k}") for k in ALPHA_KEYS] if self.genotype is None else []

    def alphas(self) -> dict[str, torch.Tensor]:
        if self.genotype is not None:
            return {}
        return {k: getattr(self, f"alpha_{k}").detach().cpu() for k in ALPHA_KEYS}

    def alpha_probs(self) -> dict[str, float]:
        """``alpha/dc/node1/hm0/dil_conv`` -> probability (hm = the module's input index)."""
        return alpha_probs("nas3dunet", {k: v.numpy() for k, v in self.alphas().items()})

    def check_shape(self, shape: tuple[int, ...]) -> None:
        check_patch("nas3dunet", shape, self.depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_shape(x.shape)
        w = {}
        if self.genotype is None:
            w = {k: F.softmax(getattr(self, f"alpha_{k}"), dim=-1) for k in ALPHA_KEYS}
        s0, s1 = self.stem0(x), self.stem1(x)
        skips = [s0, s1]
        for cell in self.down:
            s0, s1 = s1, cell(s0, s1, w.get("down_special"), w.get("down_normal"))
            skips.append(s1)
        skips.pop()
        for cell in self.up:
            s1 = cell(skips.pop(), s1, w.get("up_special"), w.get("up_normal"))
        return self.head(s1)
