"""Toy-sized settings shared by the tests: the real code paths at sizes a 2-core CPU runs in
seconds (V-NAS at width 1/16 on 32x32x16 phantoms; NAS-3D-U-Net of depth 2 on 16^3)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TINY_VNAS = [
    "data.synthetic.cases=6",
    "data.synthetic.shape=[32,32,16]",
    "split.folds=2",
    "patch.search=[32,32,16]",
    "patch.train=[32,32,16]",
    "patch.test=[32,32,16]",
    "model.width=0.0625",
    "model.psp=false",
]

TINY_NAS3D = [
    "data.root=null",
    "data.synthetic.layout=brats",
    "data.synthetic.cases=5",
    "data.synthetic.shape=[16,16,16]",
    "split.folds=2",
    "patch.search=[16,16,16]",
    "patch.train=[16,16,16]",
    "patch.test=[16,16,16]",
    "patch.elastic_prob=0",
    "patch.rotate_degrees=0",
    "model.depth=2",
    "model.init_kernels=2",
]

VNAS_CONFIG = ROOT / "configs" / "demo.yaml"
NAS3D_CONFIG = ROOT / "configs" / "nas3dunet_brats.yaml"
