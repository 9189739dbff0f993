"""Which network each evaluation uses, loaded once per weights file.

Shared by ``pipelines.evaluate`` (registration), ``pipelines.patch_eval`` (FPR95) and
``pipelines.keypoint_support``.
"""
from __future__ import annotations

from register.config import MODALITIES


def config_modality(set_name: str) -> str:
    """``Config.modality`` for a test set (sets that are not a pipeline modality -> ``auto``)."""
    return set_name if set_name in MODALITIES else "auto"


class Models:
    """Networks loaded once, keyed by the weights they come from, in ``precision``
    (:func:`register.score.set_precision`)."""

    def __init__(self, name: str, device: str, *, precision: str = "auto"):
        self.name, self.device, self.precision, self._cache = name, device, precision, {}

    def get(self, modality: str):
        from register.score import load_model, weights_for

        key = str(weights_for()) if self.name == "auto" else self.name
        if key not in self._cache:
            self._cache[key] = load_model(self.name, self.device, precision=self.precision)
        return self._cache[key]
