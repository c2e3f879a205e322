"""Hyperparameter sets: how a sampled set travels (encode/decode) and which set wins. Pure
(no ray); :mod:`voxnas.platform.tune` turns the typed ``ray.hp_space`` into Tune's
distributions with :func:`param_name`.

A sampled value travels in the trial config as ``hp__search__weight_optim__lr`` and reaches
the config as the override ``search.weight_optim.lr=<json>``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["PREFIX", "SetScore", "best_set", "hp_overrides", "hp_tag", "param_name", "sampled"]

PREFIX = "hp__"


def param_name(key: str) -> str:
    """``search.weight_optim.lr`` -> ``hp__search__weight_optim__lr``."""
    return PREFIX + key.replace(".", "__")


def sampled(config: dict[str, Any]) -> dict[str, Any]:
    """The sampled hyperparameters of a trial config (encoded names)."""
    return {k: v for k, v in config.items() if k.startswith(PREFIX)}


def hp_overrides(config: dict[str, Any]) -> list[str]:
    """The sampled hyperparameters as ``--set`` strings (``search.weight_optim.lr=0.01``)."""
    return [
        f"{k[len(PREFIX) :].replace('__', '.')}={json.dumps(v)}"
        for k, v in sorted(sampled(config).items())
    ]


def hp_tag(config: dict[str, Any]) -> str:
    """Names a set in run names: ``0`` for the config's own, else a short hash of the sampled
    values (the same on every fold of a set)."""
    hp = hp_overrides(config)
    return hashlib.sha1(" ".join(sorted(hp)).encode()).hexdigest()[:6] if hp else "0"


@dataclass(frozen=True)
class SetScore:
    key: str  # the set as sorted JSON of its encoded values
    hp: dict[str, Any]
    mean_val_dice: float
    folds: tuple[int | None, ...]


def best_set(
    outcomes: list[tuple[dict[str, Any], int | None, float]], folds: list[int | None]
) -> tuple[SetScore, list[SetScore]]:
    """``outcomes``: (sampled hp, fold, final val DSC) per finished search trial. A set that
    searched every fold in ``folds`` is scored by its mean val DSC; returns the best and all
    complete sets (ties: the first seen). ValueError when no set is complete."""
    by_set: dict[str, dict[int | None, float]] = {}
    hps: dict[str, dict[str, Any]] = {}
    for hp, fold, dice in outcomes:
        key = json.dumps(hp, sort_keys=True)
        hps[key] = hp
        by_set.setdefault(key, {})[fold] = float(dice)
    scores = [
        SetScore(key, hps[key], sum(f.values()) / len(f), tuple(folds))
        for key, f in by_set.items()
        if set(f) == set(folds)
    ]
    if not scores:
        raise ValueError(f"no hyperparameter set finished every fold of {folds}")
    best = max(scores, key=lambda s: s.mean_val_dice)  # max keeps the first of equals
    return best, scores
