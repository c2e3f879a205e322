"""Dataset readers for the three folder layouts: MSD (Decathlon), BraTS, paired.

A reader turns a folder into a :class:`Dataset`: the list of cases, each with one image
file per modality (or one 4D file holding all modalities) and a label file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BRATS_MODALITIES",
    "Case",
    "Dataset",
    "DatasetError",
    "detect_layout",
    "read_dataset",
]

BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")
BRATS_LABELS = {0: "background", 1: "necrotic/non-enhancing core", 2: "edema", 4: "enhancing"}
_NII = (".nii.gz", ".nii")


class DatasetError(ValueError):
    """The dataset folder cannot be read; the message names the file or folder."""


@dataclass(frozen=True)
class Case:
    """One subject: ``images`` has one path per modality, or a single 4D path."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None
    four_d: bool = False

    @property
    def files(self) -> tuple[Path, ...]:
        return self.images + ((self.label,) if self.label else ())


@dataclass(frozen=True)
class Dataset:
    root: Path
    layout: str
    modalities: tuple[str, ...]
    labels: dict[int, str]
    cases: tuple[Case, ...]
    test_images: tuple[Case, ...] = field(default_factory=tuple)

    def case(self, case_id: str) -> Case:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise DatasetError(f"{self.root}: no case {case_id!r}")

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]


def _strip_nii(name: str) -> str:
    for ext in _NII:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _nii_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(_NII)) if folder.is_dir() else []


def detect_layout(root: Path) -> str:
    """Guess the layout of ``root``: ``msd``, ``brats`` or ``paired``."""
    if (root / "dataset.json").is_file():
        return "msd"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "paired"
    subdirs = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    if any(list(d.glob("*_seg.nii*")) or list(d.glob("*_flair.nii*")) for d in subdirs):
        return "brats"
    raise DatasetError(
        f"{root}: cannot tell the layout (no dataset.json, no images/ + labels/, "
        "no BraTS subject folders)"
    )


def _inside(root: Path, rel: str, where: str) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DatasetError(
            f"{root / 'dataset.json'}: {where} path {rel!r} escapes the dataset root"
        )
    return path


def _msd_images(root: Path, rel: str, n_mod: int, where: str) -> tuple[tuple[Path, ...], bool]:
    path = _inside(root, rel, where)
    if path.exists() or n_mod == 1:
        return (path,), n_mod > 1
    # nnU-Net style: imagesTr/x_0000.nii.gz, x_0001.nii.gz, ... one file per channel
    stem = _strip_nii(path.name)
    ext = path.name[len(stem) :]
    channels = tuple(path.with_name(f"{stem}_{i:04d}{ext}") for i in range(n_mod))
    if channels[0].exists():
        return channels, False
    return (path,), True


def _read_msd(root: Path) -> Dataset:
    meta_path = root / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{meta_path}: unreadable dataset.json ({err})") from None
    for key in ("modality", "labels", "training"):
        if key not in meta:
            raise DatasetError(f"{meta_path}: missing key {key!r}")
    modality = meta["modality"]
    mods = tuple(str(modality[k]) for k in sorted(modality, key=int))
    labels = {int(k): str(v) for k, v in meta["labels"].items()}
    cases = []
    for i, entry in enumerate(meta["training"]):
        if not isinstance(entry, dict) or "image" not in entry:
            raise DatasetError(f"{meta_path}: training[{i}] has no 'image'")
        images, four_d = _msd_images(root, entry["image"], len(mods), f"training[{i}].image")
        label = _inside(root, entry["label"], f"training[{i}].label") if "label" in entry else None
        cid = _strip_nii(Path(entry["image"]).name)
        cases.append(Case(cid, images, label, four_d))
    tests = []
    for i, rel in enumerate(meta.get("test", [])):
        rel = rel["image"] if isinstance(rel, dict) else rel
        images, four_d = _msd_images(root, rel, len(mods), f"test[{i}]")
        tests.append(Case(_strip_nii(Path(rel).name), images, None, four_d))
    return Dataset(root, "msd", mods, labels, tuple(cases), tuple(tests))


def _read_brats(root: Path) -> Dataset:
    cases = []
    for sub in sorted(d for d in root.iterdir() if d.is_dir()):
        files = {_strip_nii(p.name): p for p in _nii_files(sub)}
        found: dict[str, Path] = {}
        for stem, p in files.items():
            m = re.search(r"_(t1|t1ce|t2|flair|seg)$", stem)
            if m:
                found[m.group(1)] = p
        if not found:
            continue
        # a missing modality keeps its expected path so the integrity check reports it
        images = tuple(found.get(m, sub / f"{sub.name}_{m}.nii.gz") for m in BRATS_MODALITIES)
        label = found.get("seg", sub / f"{sub.name}_seg.nii.gz")
        cases.append(Case(sub.name, images, label))
    return Dataset(root, "brats", BRATS_MODALITIES, dict(BRATS_LABELS), tuple(cases))


def _read_paired(root: Path) -> Dataset:
    labels_dir = root / "labels"
    cases = []
    for img in _nii_files(root / "images"):
        stem = _strip_nii(img.name)
        label = next(
            (labels_dir / f"{stem}{e}" for e in _NII if (labels_dir / f"{stem}{e}").exists()),
            labels_dir / img.name,
        )
        cases.append(Case(stem, (img,), label))
    labels = {0: "background", 1: "foreground"}
    meta = root / "labels.json"
    if meta.is_file():
        labels = {int(k): str(v) for k, v in json.loads(meta.read_text()).items()}
    return Dataset(root, "paired", ("CT",), labels, tuple(cases))


def read_dataset(root: str | Path, layout: str = "auto") -> Dataset:
    """Read a dataset folder. ``layout`` is ``auto``, ``msd``, ``brats`` or ``paired``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if layout == "auto":
        layout = detect_layout(root)
    readers = {"msd": _read_msd, "brats": _read_brats, "paired": _read_paired}
    if layout not in readers:
        raise DatasetError(f"{root}: unknown layout {layout!r} (msd, brats, paired)")
    ds = readers[layout](root)
    if not ds.cases:
        raise DatasetError(f"{root}: empty dataset (no labelled cases found for layout {layout})")
    return ds
