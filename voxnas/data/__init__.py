"""Dataset layouts, integrity check, preprocessing, cache, patches, tiling, splits, phantoms."""
