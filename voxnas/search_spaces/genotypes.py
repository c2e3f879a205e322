"""Genotypes: plain, frozen, hashable data; derive from alphas, aggregate over folds.

V-NAS: one choice (0 = 2D, 1 = 3D, 2 = P3D) per encoder cell (16, ResNet-50 layout 3,4,6,3)
and per decoder dense block (5), printed in the paper's code format
``[0 0 0, 0 0 0 1, 2 0 2 0 2 2, 0 0 0] [0 0 1 0 1]``.

NAS-3D-U-Net: per cell type (down, up) and node, two genes ``(op, input)``; input 0 is X0, 1
is X1, ``k >= 2`` is node ``k - 2``. Edge order in a cell: node 0 takes inputs 0..1, node 1
0..2, node 2 0..3. Down cells: edges from X0 and X1 are DHMs, others NHMs. Up cells: the edge
from X1 is a UHM, others NHMs.

Ranking rule for NAS-3D-U-Net nodes: each hybrid module keeps its most probable op; a node
keeps the two modules of highest strength, where strength = max softmax(alpha) x (op count of
the module / op count of the normal set). The rescaling makes modules of different op-set
sizes comparable: a uniform DHM (1/6 x 6/5) ties a uniform NHM (1/5), as in the public code.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from voxnas.search_spaces.ops import (
    NAS3D_DOWN_OPS,
    NAS3D_NORMAL_OPS,
    NAS3D_UP_OPS,
    VNAS_DECODER_OPS,
    VNAS_ENCODER_OPS,
    short_name,
)

__all__ = [
    "ENCODER_LAYOUT",
    "NAS3DGenotype",
    "VNASGenotype",
    "aggregate_genotypes",
    "alpha_probs",
    "cell_edges",
    "derive_genotype",
    "genotype_from_json",
    "softmax",
]

ENCODER_LAYOUT = (3, 4, 6, 3)
VNAS_CHOICES = ("2D", "3D", "P3D")
N_ENCODER, N_DECODER = sum(ENCODER_LAYOUT), 5


def softmax(a: Any, axis: int = -1) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@dataclass(frozen=True)
class VNASGenotype:
    encoder: tuple[int, ...]
    decoder: tuple[int, ...]

    space = "vnas"

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder", tuple(int(v) for v in self.encoder))
        object.__setattr__(self, "decoder", tuple(int(v) for v in self.decoder))
        if len(self.encoder) != N_ENCODER or len(self.decoder) != N_DECODER:
            raise ValueError(
                f"V-NAS genotype needs {N_ENCODER} encoder and {N_DECODER} decoder "
                f"choices, got {len(self.encoder)} and {len(self.decoder)}"
            )
        if not set(self.encoder + self.decoder) <= {0, 1, 2}:
            raise ValueError("V-NAS choices are 0 (2D), 1 (3D) or 2 (P3D)")

    def code(self) -> str:
        groups, i = [], 0
        for n in ENCODER_LAYOUT:
            groups.append(" ".join(map(str, self.encoder[i : i + n])))
            i += n
        return f"[{', '.join(groups)}] [{' '.join(map(str, self.decoder))}]"

    @classmethod
    def parse(cls, code: str) -> VNASGenotype:
        """Parse the paper's code, e.g. ``[0 0 0, 0 0 0 1, 2 0 2 0 2 2, 0 0 0] [0 0 1 0 1]``."""
        parts = code.replace("]", "[").split("[")
        lists = [p for p in parts if p.strip(" ,")]
        if len(lists) != 2:
            raise ValueError(f"not a V-NAS code (two bracketed lists expected): {code!r}")
        try:
            enc = [int(v) for v in lists[0].replace(",", " ").split()]
            dec = [int(v) for v in lists[1].replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"not a V-NAS code (integers expected): {code!r}") from None
        return cls(tuple(enc), tuple(dec))

    def __str__(self) -> str:
        return self.code()

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": "vnas",
            "encoder": list(self.encoder),
            "decoder": list(self.decoder),
            "code": self.code(),
        }

    def describe(self) -> list[str]:
        lines, i = [], 0
        for stage, n in enumerate(ENCODER_LAYOUT):
            for j in range(n):
                lines.append(
                    f"encoder stage {stage + 1} cell {j + 1:>2} (enc{i:02d}): "
                    f"{VNAS_CHOICES[self.encoder[i]]}"
                )
                i += 1
        for b, d in enumerate(self.decoder):
            lines.append(f"decoder dense block {b} (dec{b}): {VNAS_CHOICES[d]}")
        return lines


class Gene(NamedTuple):
    op: str
    input: int


def cell_edges(kind: str, n_nodes: int) -> list[tuple[int, int, bool]]:
    """``(node, input, special)`` for every edge of a ``down`` or ``up`` cell, in order."""
    edges = []
    for node in range(n_nodes):
        for inp in range(node + 2):
            special = inp <= 1 if kind == "down" else inp == 1
            edges.append((node, inp, special))
    return edges


def _special_ops(kind: str) -> tuple[str, ...]:
    return tuple(NAS3D_DOWN_OPS if kind == "down" else NAS3D_UP_OPS)


def alpha_probs(space: str, alphas: dict[str, Any]) -> dict[str, float]:
    """softmax(alpha) by name, ``alpha/<cell>/<op>``: V-NAS cells ``enc07``/``dec02`` with
    ops ``2d``/``3d``/``p3d``; NAS-3D-U-Net hybrid modules ``dc/node1/hm0`` (``uc`` for up
    cells; ``hm<k>``: the module on the node's input k). Empty for fixed networks."""
    out: dict[str, float] = {}
    if not alphas:
        return out
    if space == "vnas":
        for prefix, key, ops in (
            ("enc", "encoder", VNAS_ENCODER_OPS),
            ("dec", "decoder", VNAS_DECODER_OPS),
        ):
            for i, row in enumerate(softmax(np.asarray(alphas[key], dtype=float))):
                for op, p in zip(ops, row):
                    out[f"alpha/{prefix}{i:02d}/{short_name(op)}"] = float(p)
        return out
    n_nodes = int(np.asarray(alphas["up_special"]).shape[0])
    for kind, tag in (("down", "dc"), ("up", "uc")):
        rows = {
            True: iter(softmax(np.asarray(alphas[f"{kind}_special"], dtype=float))),
            False: iter(softmax(np.asarray(alphas[f"{kind}_normal"], dtype=float))),
        }
        for node, inp, special in cell_edges(kind, n_nodes):
            ops = _special_ops(kind) if special else tuple(NAS3D_NORMAL_OPS)
            for op, p in zip(ops, next(rows[special])):
                out[f"alpha/{tag}/node{node}/hm{inp}/{op}"] = float(p)
    return out


@dataclass(frozen=True)
class NAS3DGenotype:
    down: tuple[tuple[Gene, ...], ...]
    up: tuple[tuple[Gene, ...], ...]

    space = "nas3dunet"

    def __post_init__(self) -> None:
        for kind in ("down", "up"):
            nodes = tuple(
                tuple(Gene(str(g[0]), int(g[1])) for g in node) for node in getattr(self, kind)
            )
            object.__setattr__(self, kind, nodes)
            for i, node in enumerate(nodes):
                for g in node:
                    if not 0 <= g.input <= i + 1:
                        raise ValueError(
                            f"{kind} node {i}: input {g.input} out of range 0..{i + 1}"
                        )
                    special = g.input <= 1 if kind == "down" else g.input == 1
                    allowed = _special_ops(kind) if special else tuple(NAS3D_NORMAL_OPS)
                    if g.op not in allowed:
                        raise ValueError(
                            f"{kind} node {i}: op {g.op!r} not allowed on input "
                            f"{g.input} (one of {', '.join(allowed)})"
                        )
        if len(self.down) != len(self.up):
            raise ValueError("down and up cells must have the same number of nodes")

    @property
    def n_nodes(self) -> int:
        return len(self.down)

    def code(self) -> str:
        def cell(nodes):
            return " | ".join(
                ", ".join(f"{g.op}<-{_input_name(g.input)}" for g in n) for n in nodes
            )

        return f"DC: {cell(self.down)} ; UC: {cell(self.up)}"

    def __str__(self) -> str:
        return self.code()

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": "nas3dunet",
            "down": [[list(g) for g in n] for n in self.down],
            "up": [[list(g) for g in n] for n in self.up],
            "code": self.code(),
        }

    def describe(self) -> list[str]:
        lines = []
        for kind, label in (("down", "downward cell (DC)"), ("up", "upward cell (UC)")):
            lines.append(label)
            for i, node in enumerate(getattr(self, kind)):
                genes = ", ".join(f"{g.op}({_input_name(g.input)})" for g in node)
                lines.append(f"  node {i}: {genes}")
        return lines


def _input_name(i: int) -> str:
    return ("X0", "X1")[i] if i < 2 else f"n{i - 2}"


def genotype_from_json(data: str | dict[str, Any]) -> VNASGenotype | NAS3DGenotype:
    d = json.loads(data) if isinstance(data, str) else data
    if d.get("space") == "vnas":
        return VNASGenotype(tuple(d["encoder"]), tuple(d["decoder"]))
    if d.get("space") == "nas3dunet":
        return NAS3DGenotype(
            tuple(tuple(Gene(*g) for g in n) for n in d["down"]),
            tuple(tuple(Gene(*g) for g in n) for n in d["up"]),
        )
    raise ValueError(f"unknown genotype space {d.get('space')!r}")


def _derive_cell(kind: str, special: np.ndarray, normal: np.ndarray, n_nodes: int):
    n_norm = len(NAS3D_NORMAL_OPS)
    names = {True: _special_ops(kind), False: tuple(NAS3D_NORMAL_OPS)}
    rows = {True: iter(softmax(special)), False: iter(softmax(normal))}
    per_node: list[list[tuple[float, Gene]]] = [[] for _ in range(n_nodes)]
    for node, inp, is_special in cell_edges(kind, n_nodes):
        p = next(rows[is_special])
        k = int(np.argmax(p))
        strength = float(p[k]) * len(names[is_special]) / n_norm
        per_node[node].append((strength, Gene(names[is_special][k], inp)))
    nodes = []
    for cands in per_node:  # stable: ties keep edge order
        best = sorted(range(len(cands)), key=lambda j: -cands[j][0])[:2]
        nodes.append(tuple(cands[j][1] for j in sorted(best)))
    return tuple(nodes)


def derive_genotype(space: str, alphas: dict[str, Any]) -> VNASGenotype | NAS3DGenotype:
    """Argmax genotype from alphas (``encoder``/``decoder`` or ``down_special`` ... )."""
    if space == "vnas":
        return VNASGenotype(
            tuple(np.argmax(np.asarray(alphas["encoder"]), -1)),
            tuple(np.argmax(np.asarray(alphas["decoder"]), -1)),
        )
    n_nodes = int(np.asarray(alphas["up_special"]).shape[0])
    return NAS3DGenotype(
        _derive_cell(
            "down", np.asarray(alphas["down_special"]), np.asarray(alphas["down_normal"]), n_nodes
        ),
        _derive_cell(
            "up", np.asarray(alphas["up_special"]), np.asarray(alphas["up_normal"]), n_nodes
        ),
    )


def aggregate_genotypes(
    space: str, fold_alphas: list[dict[str, Any]], fold_genotypes: list[Any] | None = None
) -> VNASGenotype | NAS3DGenotype:
    """Seed 000 section 3.1: sum softmax(alpha) over folds, then argmax. For NAS-3D-U-Net the
    vote is over the genotypes the folds *returned* (seed 002 Table 2: the structure seen NC
    times, or the most common one), not structures re-derived from final alphas; a tie is
    broken by the summed probabilities."""
    if not fold_alphas:
        raise ValueError("no fold alphas to aggregate")
    summed = {k: sum(softmax(a[k]) for a in fold_alphas) for k in fold_alphas[0]}
    if space == "vnas":
        return derive_genotype("vnas", summed)
    voters = fold_genotypes or [derive_genotype(space, a) for a in fold_alphas]
    counts = Counter(voters).most_common()
    tied = [g for g, c in counts if c == counts[0][1]]
    if len(tied) == 1:
        return tied[0]
    # log of summed probabilities keeps their ranking when softmax is applied again
    fallback = derive_genotype(space, {k: np.log(v) for k, v in summed.items()})
    return fallback if fallback in tied else tied[0]
