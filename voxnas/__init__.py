"""voxnas: neural architecture search for 3D medical image segmentation."""

__version__ = "0.1.0"
__all__ = ["__version__"]
