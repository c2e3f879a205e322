"""The package's floors: every import inside ``voxnas`` points down (or sideways)."""

import ast
from pathlib import Path

import voxnas

PKG = Path(voxnas.__file__).parent
FLOORS = {
    "config": 0,
    "console": 0,
    "device": 0,
    "run_layout": 0,
    "shape_rules": 0,
    "search_spaces": 1,
    "data": 2,
    "evaluation": 3,
    "trainables": 4,
    "platform": 5,
    "cli": 6,
}


def floor_of(module: str) -> int:
    return FLOORS[module.split(".")[1]]


def imports(path: Path) -> list[str]:
    mod = "voxnas." + ".".join(path.relative_to(PKG).with_suffix("").parts)
    pkg = mod.rsplit(".", 1)[0] if path.name != "__init__.py" else mod.removesuffix(".__init__")
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("voxnas."):
                out.append(name)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("voxnas.")]
    return out


def test_every_import_points_down():
    upward = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "__init__.py":
            continue
        me = floor_of("voxnas." + rel.parts[0].removesuffix(".py"))
        for name in imports(path):
            if floor_of(name) > me:
                upward.append(f"{rel} imports {name}")
    assert not upward, "\n".join(upward)


def test_only_platform_imports_ray_and_mlflow():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            for n in names:
                top = n.split(".")[0]
                rel = path.relative_to(PKG).as_posix()
                if top == "ray" and rel not in ("platform/tune.py",):
                    offenders.append(f"{rel} imports {n}")
                if top == "mlflow" and rel not in (
                    "platform/tracking.py",
                    "platform/mlflow_model.py",
                ):
                    offenders.append(f"{rel} imports {n}")
    assert not offenders, "\n".join(offenders)
