"""Model weights: the registry of published checkpoints, the local cache, fetch/add/verify.

Stages that need weights call :func:`require_weights` before doing any work.
"""
from stimgen.weights.fetch import (
    ChecksumMismatchError, DownloadError, TinyModelError, add_model, fetch_model, verify_models,
)
from stimgen.weights.registry import (
    ModelEntry, TinyWeightsWarning, UnknownModelError, get_model, load_registry, model_status,
    models_dir, models_for_stages, require_weights, stimgen_home, weights_missing,
)

__all__ = [
    "ChecksumMismatchError", "DownloadError", "ModelEntry", "TinyModelError", "TinyWeightsWarning",
    "UnknownModelError", "add_model", "fetch_model", "get_model", "load_registry",
    "model_status", "models_dir", "models_for_stages", "require_weights", "stimgen_home",
    "verify_models", "weights_missing",
]
