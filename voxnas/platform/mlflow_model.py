"""The MLflow model voxnas logs: a *models-from-code* pyfunc, no pickle.

MLflow stores this file (code, reviewed here) next to the voxnas bundle ``model.pt``
(tensors and plain metadata, loaded with ``weights_only=True``). ``mlflow.pyfunc.load_model``
runs this code; ``voxnas predict`` does not even do that: it downloads ``model.pt`` and
loads it weights-only. ``predict`` takes a preprocessed ``(C, X, Y, Z)`` float array and
returns the label volume in the dataset's values.
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class VoxnasBundleModel(PythonModel):
    def load_context(self, context) -> None:
        from voxnas.trainables.bundle import load_bundle

        self.model, self.meta = load_bundle(context.artifacts["bundle"])

    # np.ndarray: a type hint MLflow accepts without schema inference (no hint at all makes
    # it warn at every load; the logged signature says the shape)
    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        from voxnas.evaluation.inference import segment

        return segment(self.model, self.meta, np.asarray(model_input, dtype=np.float32))


mlflow.models.set_model(VoxnasBundleModel())
