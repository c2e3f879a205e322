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
# the BraTS evaluation regions over its label values (1 necrosis, 2 oedema, 4 enhancing):
# whole tumour, tumour core, enhancing tumour; nested WT > TC > ET
BRATS_REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
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
    if not isinstance(rel, str) or not rel:
        raise DatasetError(f"{root / 'dataset.json'}: {where} must be a path string, got {rel!r}")
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DatasetError(
            f"{root / 'dataset.json'}: {where} path {rel!r} escapes the dataset root"
        )
    return path


def _contained(root: Path, path: Path) -> Path:
    """``path`` itself; a DatasetError when it (a symlink) resolves outside ``root``."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise DatasetError(f"{path}: links outside the dataset root {root}")
    return path


def _int_keyed(meta_path: Path, key: str, value) -> dict[int, str]:
    """``{"0": "CT"}`` style mappings of dataset.json / labels.json, checked."""
    if not isinstance(value, dict) or not value:
        raise DatasetError(f"{meta_path}: {key!r} must be a non-empty mapping, got {value!r}")
    out = {}
    for k, v in value.items():
        try:
            out[int(k)] = str(v)
        except (TypeError, ValueError):
            raise DatasetError(f"{meta_path}: {key!r} key {k!r} is not an integer") from None
    if key == "labels" and 0 not in out:
        raise DatasetError(f"{meta_path}: 'labels' must declare 0 (background)")
    if key == "labels" and any(v < 0 or v > 255 for v in out):
        raise DatasetError(f"{meta_path}: label values must be 0..255, got {sorted(out)}")
    return out


def _unique(root: Path, cases: list[Case]) -> list[Case]:
    seen: dict[str, Case] = {}
    for c in cases:
        if c.case_id in seen:
            raise DatasetError(
                f"{c.images[0]}: case id {c.case_id!r} also used by {seen[c.case_id].images[0]}"
                " (case ids name cache files and splits: they must be unique)"
            )
        seen[c.case_id] = c
    return cases


def _msd_images(root: Path, rel: str, n_mod: int, where: str) -> tuple[tuple[Path, ...], bool]:
    path = _inside(root, rel, where)
    if path.exists() or n_mod == 1:
        return (path,), n_mod > 1
    # nnU-Net style: imagesTr/x_0000.nii.gz, x_0001.nii.gz, ... one file per channel
    stem = _strip_nii(path.name)
    ext = path.name[len(stem) :]
    channels = tuple(path.with_name(f"{stem}_{i:04d}{ext}") for i in range(n_mod))
    if channels[0].exists():
        for c in channels:
            if c.exists():
                _contained(root, c)
        return channels, False
    return (path,), True


def _read_msd(root: Path) -> Dataset:
    meta_path = root / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{meta_path}: unreadable dataset.json ({err})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{meta_path}: must be a JSON object")
    for key in ("modality", "labels", "training"):
        if key not in meta:
            raise DatasetError(f"{meta_path}: missing key {key!r}")
    modality = _int_keyed(meta_path, "modality", meta["modality"])
    mods = tuple(modality[k] for k in sorted(modality))
    labels = _int_keyed(meta_path, "labels", meta["labels"])
    if not isinstance(meta["training"], list):
        raise DatasetError(f"{meta_path}: 'training' must be a list")
    cases = []
    for i, entry in enumerate(meta["training"]):
        if not isinstance(entry, dict) or "image" not in entry:
            raise DatasetError(f"{meta_path}: training[{i}] has no 'image'")
        images, four_d = _msd_images(root, entry["image"], len(mods), f"training[{i}].image")
        label = _inside(root, entry["label"], f"training[{i}].label") if "label" in entry else None
        cid = _strip_nii(Path(entry["image"]).name)
        cases.append(Case(cid, images, label, four_d))
    _unique(root, cases)
    tests = []
    test_list = meta.get("test", [])
    if not isinstance(test_list, list):
        raise DatasetError(f"{meta_path}: 'test' must be a list")
    for i, rel in enumerate(test_list):
        if isinstance(rel, dict):
            if "image" not in rel:
                raise DatasetError(f"{meta_path}: test[{i}] has no 'image'")
            rel = rel["image"]
        images, four_d = _msd_images(root, rel, len(mods), f"test[{i}]")
        tests.append(Case(_strip_nii(Path(rel).name), images, None, four_d))
    return Dataset(root, "msd", mods, labels, tuple(cases), tuple(tests))


def _read_brats(root: Path) -> Dataset:
    cases = []
    for sub in sorted(d for d in root.iterdir() if d.is_dir()):
        files = {_strip_nii(p.name): _contained(root, p) for p in _nii_files(sub)}
        found: dict[str, Path] = {}
        for stem, p in files.items():
            m = re.search(r"_(t1|t1ce|t2|flair|seg)$", stem, re.IGNORECASE)
            if m:
                kind = m.group(1).lower()
                if kind in found:
                    raise DatasetError(
                        f"{sub}: two files for {kind!r}: {found[kind].name} and {p.name}"
                    )
                found[kind] = p
        if not found:
            continue
        # a missing modality keeps its expected path so the integrity check reports it
        images = tuple(found.get(m, sub / f"{sub.name}_{m}.nii.gz") for m in BRATS_MODALITIES)
        label = found.get("seg", sub / f"{sub.name}_seg.nii.gz")
        cases.append(Case(sub.name, images, label))
    return Dataset(root, "brats", BRATS_MODALITIES, dict(BRATS_LABELS), tuple(_unique(root, cases)))


def _read_paired(root: Path) -> Dataset:
    labels_dir = root / "labels"
    cases = []
    for img in _nii_files(root / "images"):
        _contained(root, img)
        stem = _strip_nii(img.name)
        label = next(
            (labels_dir / f"{stem}{e}" for e in _NII if (labels_dir / f"{stem}{e}").exists()),
            labels_dir / img.name,
        )
        if label.exists():
            _contained(root, label)
        cases.append(Case(stem, (img,), label))
    labels = {0: "background", 1: "foreground"}
    meta = root / "labels.json"
    if meta.is_file():
        try:
            raw = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DatasetError(f"{meta}: unreadable labels.json ({err})") from None
        labels = _int_keyed(meta, "labels", raw)
    return Dataset(root, "paired", ("CT",), labels, tuple(_unique(root, cases)))


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
