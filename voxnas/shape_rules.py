"""Which patch sizes each search space accepts: checked when a config is loaded (not at the
first forward pass inside a Ray worker) and by the networks themselves."""

from __future__ import annotations

__all__ = ["check_patch", "patch_multiples"]


def patch_multiples(space: str, depth: int = 4) -> tuple[int, int, int]:
    """V-NAS: five in-plane and four through-plane halvings -> X, Y multiples of 32, Z of 16.
    NAS-3D-U-Net: ``depth`` down cells after the stem's halving -> every size a multiple of
    ``2 ** (depth + 1)``."""
    if space == "vnas":
        return (32, 32, 16)
    m = 2 ** (depth + 1)
    return (m, m, m)


def check_patch(space: str, shape, depth: int = 4, what: str = "input") -> None:
    """ValueError naming ``what`` when ``shape`` (last three sizes) does not fit the space."""
    size = tuple(int(s) for s in tuple(shape)[-3:])
    mult = patch_multiples(space, depth)
    if any(s % m for s, m in zip(size, mult)) or min(size) <= 0:
        name = "V-NAS" if space == "vnas" else "NAS-3D-U-Net"
        rule = (
            "X and Y must be multiples of 32 and Z a multiple of 16 (five in-plane and four "
            "through-plane halvings)"
            if space == "vnas"
            else f"every size must be a multiple of {mult[0]} (depth {depth} + stem halvings)"
        )
        raise ValueError(f"{name} {what} {size}: {rule}")
