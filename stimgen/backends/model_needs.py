"""Which registry models each backend's build needs: pure data, importable without torch.

Owns :data:`CORE_MODELS`, :data:`PHOTO_MODELS` and :func:`required_models` (the one
definition; the emostyle backend imports them from here), so that `stimgen validate` can
name the files a build needs without importing torch.
"""
from __future__ import annotations

__all__ = ["CORE_MODELS", "PHOTO_MODELS", "required_models"]

#: Always needed by emostyle: the generator, the EmoStyle edit, VGGFace2 (identity
#: similarity) and EmoNet (the emonet rater; its heatmaps give the geometric rater its
#: landmarks).
CORE_MODELS = ("stylegan2_ffhq", "emostyle_mapping", "vggface2_resnet50", "emonet_8")
#: Needed for photo identities: the face-alignment landmarker (faces are found by the
#: embedded MTCNN detector, which ships with stimgen: stimgen.detection).
PHOTO_MODELS = ("fan_2d",)


def required_models(kinds: set[str], rater: str) -> list[str]:
    """Registry names an emostyle build needs, given its identity kinds and its rater.

    Parameters
    ----------
    kinds : set of str
        The identity kinds of the protocol ("seed", "latent", "image").
    rater : str
        The primary rater; every rater needs EmoNet here (its heatmaps give the
        geometric rater its landmarks), so it does not change the list today.

    Returns
    -------
    list of str
        Registry model names, core models first.

    Examples
    --------
    >>> required_models({"seed"}, "emonet")
    ['stylegan2_ffhq', 'emostyle_mapping', 'vggface2_resnet50', 'emonet_8']
    >>> required_models({"seed", "image"}, "geometric")[-1]
    'fan_2d'
    """
    return list(CORE_MODELS) + (list(PHOTO_MODELS) if "image" in kinds else [])
