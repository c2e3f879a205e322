"""ray_cluster.yaml passes Ray's own cluster-config validation (offline)."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_yaml_validates():
    pytest.importorskip("ray")
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    validate_config(prepare_config(cfg))  # raises on schema errors
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"]["GPU"] == 0
    assert any(t["resources"].get("GPU", 0) >= 1 for n, t in types.items() if n != "head")
    assert any("voxnas" in c for c in cfg["setup_commands"])


def test_broken_cluster_yaml_is_rejected():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    cfg["available_node_types"]["gpu_worker"]["resources"] = "lots"
    from jsonschema.exceptions import ValidationError

    with pytest.raises(ValidationError, match="lots"):
        validate_config(prepare_config(cfg))
