"""The `emostyle` backend: StyleGAN2-ADA faces edited to valence/arousal targets with EmoStyle.

Owns :class:`EmoStyleBackend`, which acquires identities (seed, latent file, or a photo that
is aligned, inverted and personalised, cached on disk) and renders each one's targets in
batches; the photo steps live in ``photo``, ``align``, ``invert``, ``personalize``, ``cache``,
and ``steps`` shows their progress.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from stimgen.backends.base import FFHQ_FRAMING, FRAMING_KEY, Backend, Rendered
from stimgen.errors import StimgenError
from stimgen.settings import RenderSpec
from stimgen.backends.emostyle.edit import (AdaptiveBatch, EditedFaces, edit_faces, read_latent,
                                            seed_latent)
from stimgen.backends.emostyle.models import (ModelSet, load_model_set, model_files,
                                              select_device)
from stimgen.protocol.models import Identity

__all__ = ["EmoStyleBackend", "IdentityHandle"]


@dataclass
class IdentityHandle:
    """A prepared identity: its W+ latent and the synthesis network that draws it."""

    identity_id: str
    ws: torch.Tensor                 # [1, num_ws, w_dim] on the device
    synthesis: nn.Module             # the generator's, or a copy personalised to a photo
    reference: np.ndarray            # [D] identity embedding of the identity's reference face


class EmoStyleBackend(Backend):
    """StyleGAN2-ADA + EmoStyle edits (see docs/backends-emostyle.md).

    Parameters
    ----------
    spec : RenderSpec
        Of a protocol with ``backend: {name: emostyle}`` (:func:`stimgen.plan.render_spec`);
        identity paths resolve against it.
    weights : dict
        Registry name -> checkpoint path (from :func:`stimgen.weights.require_weights`).

    Networks load lazily, once per process, on the first ``prepare``: creating the backend
    only checks the device, so a build fails fast without loading anything.
    """

    name = "emostyle"
    version = "1"

    def __init__(self, spec: RenderSpec, weights: Mapping[str, Path]):
        self.options = spec.backend.options
        self.image_size = spec.output.image_size
        self.device = select_device(self.options.device)
        self.batch = AdaptiveBatch(self.options.batch_size)
        # landmarks for the geometric rater (it may steer a correction without being primary),
        # for the clips' jitter (output.dynamic) and to place `output.mask: oval` (issue 17)
        self.with_landmarks = ("geometric" in spec.rating.names
                               or spec.output.dynamic is not None
                               or spec.output.mask == "oval")
        self._spec = spec
        self._weights = dict(weights)

    # -- the pipeline's backend interface ---------------------------------------------
    @property
    def batch_size(self) -> int:
        """Targets per batch; halves for the rest of the process after an out-of-memory."""
        return self.batch.size

    @property
    def model_files(self) -> list[dict[str, str]]:
        """Name, path and sha256 of every checkpoint used (manifest ``backend.model_files``)."""
        return model_files(self._weights)

    def fingerprint(self) -> dict[str, Any]:
        options = self.options.model_dump(mode="json", exclude={"batch_size", "device"})
        # The protocol seed drives personalisation's random VA targets, so it is part of it.
        return {"backend": self.name, "version": self.version, "image_size": self.image_size,
                "seed": self._spec.seed, **options,
                "models": {f["name"]: f["sha256"] for f in self.model_files},
                "face_detector": self._detector_sha256()}

    @property
    def models(self) -> ModelSet:
        return load_model_set(self._weights, self.device)

    def prepare(self, identity: Identity) -> IdentityHandle:
        """The identity's W+ latent and synthesis network (a photo is personalised first)."""
        models = self.models
        where = f'identity "{identity.id}"'
        synthesis = models.generator.synthesis
        reference_va = None        # the reference face is the unedited latent...
        if identity.seed is not None:
            ws = seed_latent(models.generator, identity.seed, self.options.truncation_psi)
        elif identity.latent is not None:
            ws = read_latent(self._spec.resolve(identity.latent), models.num_ws,
                             models.w_dim, where=where).to(self.device)
        else:
            ws, state, photo_va = self._personalised(identity)
            if state is not None:
                # ...except for a personalised photo: its generator was tuned to draw the
                # photo from ws + M(ws, photo VA), so that face is the photo's reference.
                reference_va = photo_va
                synthesis = copy.deepcopy(models.generator.synthesis)
                # Parameters only (buffers stay the base generator's); anything else is a
                # damaged cache entry, never silently half-loaded.
                result = synthesis.load_state_dict(state, strict=False)
                parameters = {name for name, _ in synthesis.named_parameters()}
                if result.unexpected_keys or set(result.missing_keys) & parameters:
                    raise StimgenError(
                        f"the cached personalisation of {where} does not fit the generator",
                        hint="delete $STIMGEN_HOME/cache/identities and build again")
                synthesis.requires_grad_(False).eval()
        reference = edit_faces(synthesis, models.mapping, ws,
                               torch.zeros(1, 2) if reference_va is None else reference_va,
                               image_size=self.image_size, vggface2=models.vggface2,
                               precision=self.options.precision, edit=reference_va is not None)
        return IdentityHandle(identity.id, ws, synthesis, reference.embeddings[0])

    def render(self, handle: IdentityHandle, targets: Sequence[tuple[float, float]]
               ) -> list[Rendered]:
        """Faces of ``handle`` at each (valence, arousal), with rater crops and similarity."""
        models = self.models

        def run(part):
            va = torch.tensor([list(t) for t in part], dtype=torch.float32)
            faces = edit_faces(handle.synthesis, models.mapping, handle.ws, va,
                               image_size=self.image_size, vggface2=models.vggface2,
                               precision=self.options.precision)
            landmarks = (crop_landmarks(models.emonet, faces.crops, self.image_size,
                                        models.resolution)
                         if self.with_landmarks else [None] * len(part))
            return _rendered(faces, handle.reference, landmarks)

        return self.batch.map(run, list(targets))

    # -- photo identities ---------------------------------------------------------------
    def _personalised(self, identity: Identity
                      ) -> tuple[torch.Tensor, dict | None, torch.Tensor | None]:
        """A photo's inverted ws, personalised synthesis state and EmoNet VA of the photo
        (the VA the personalisation reconstructed it with), from the cache if there."""
        from stimgen.backends.emostyle.cache import identity_cache_key, load_cached, store_cached
        from stimgen.photos import load_photo
        from stimgen.backends.emostyle.steps import say_reused

        path = self._spec.resolve(identity.image)
        image = load_photo(path)        # raises PhotoError naming the file when unusable
        photo = path.read_bytes()
        models = {f["name"]: f["sha256"] for f in self.model_files}
        key = identity_cache_key(photo, self._photo_settings(), models)
        cached = load_cached(key)
        if cached is None:
            # the inversion is an entry of its own, stored before personalisation starts:
            # a build stopped during personalisation (or one with other personalisation
            # settings) starts again from the inverted code, not from the photo
            inversion_key = identity_cache_key(photo, self._inversion_settings(), models)
            inverted = load_cached(inversion_key)
            if inverted is None:
                inverted = self._align_and_invert(image, str(path), identity.id)
                store_cached(inversion_key, inverted)
            else:
                say_reused(identity.id, ("alignment", "inversion"))
            cached = self._personalise(inverted, identity.id)
            store_cached(key, cached)
        else:
            say_reused(identity.id)
        ws = cached["ws"].to(self.device, torch.float32).reshape(
            1, self.models.num_ws, self.models.w_dim)
        photo_va = cached.get("photo_va")
        return (ws, cached.get("synthesis"),
                None if photo_va is None else photo_va.to(torch.float32).reshape(1, 2))

    def _inversion_settings(self) -> dict[str, Any]:
        """What changes a photo's alignment and inversion (its identity-cache entry of its
        own): the settings of :meth:`_photo_settings` but personalisation's."""
        settings = {k: v for k, v in self._photo_settings().items() if k != "personalization"}
        return {**settings, "entry": "inversion"}

    def _photo_settings(self) -> dict[str, Any]:
        """Everything besides the photo and the models that changes a personalisation.

        Also how the critics see faces and how the optimisation runs, so that a cache entry
        made under other choices (the whole frame for EmoNet, a cosine identity loss, fp16
        layers, free W+ inversion) is never reused.
        """
        from stimgen.backends.emostyle.invert import InversionWeights

        return {"face_detector": self._detector_sha256(),
                "inversion_steps": self.options.inversion_steps,
                "inversion_wplus_steps": self.options.inversion_wplus_steps,
                "inversion_start": "w_avg, in W",
                "inversion_weights": asdict(InversionWeights()),
                "personalization": asdict(self._personalize_settings()),
                "emonet_framing": FFHQ_FRAMING, "identity_loss": "emostyle mean L1, face_pool 256",
                "optimisation_precision": "fp32",
                "resolution": self.models.resolution}

    def _personalize_settings(self):
        from stimgen.backends.emostyle.personalize import PersonalizeSettings

        weights = self.options.loss_weights
        return PersonalizeSettings(
            steps=self.options.personalization_steps, lr=self.options.personalization_lr,
            w_emotion=weights.emotion, w_pose=weights.pose, w_background=weights.background,
            w_identity=weights.identity, w_reconstruction=weights.reconstruction,
            seed=self._spec.seed)

    def _align_and_invert(self, image: np.ndarray, source: str,
                          identity_id: str) -> dict[str, Any]:
        """Align and invert one photo, showing each step's progress: the inverted code, the
        aligned face (the personalisation's target) and its 68 landmarks."""
        from stimgen.backends.emostyle.align import align_face
        from stimgen.backends.emostyle.invert import invert
        from stimgen.backends.emostyle.steps import photo_step
        from stimgen.detection import choose_face

        models = self.models
        with photo_step(identity_id, "alignment"):
            face = choose_face(self.find_faces(image), source=source,
                               policy=self.options.multiple_faces)
            aligned = align_face(image, self.face_landmarks(image, face), models.resolution)
        target = torch.from_numpy(aligned.image).permute(2, 0, 1)[None].float()
        target = (target / 127.5 - 1).to(self.device)
        steps, wplus_steps = self.options.inversion_steps, self.options.inversion_wplus_steps
        with photo_step(identity_id, "inversion", steps + wplus_steps) as progress:
            ws = invert(models.generator, target, vgg=models.vggface2, steps=steps,
                        wplus_steps=wplus_steps, progress=progress)
        return {"ws": ws.detach().cpu(), "aligned": torch.from_numpy(aligned.image.copy()),
                "landmarks": torch.from_numpy(np.asarray(aligned.landmarks, np.float64))}

    def _personalise(self, inverted: dict[str, Any], identity_id: str) -> dict[str, Any]:
        """Personalise the generator to an inverted photo (its cache entry's payload: the
        code, and with personalisation steps the tuned synthesis and the photo's VA)."""
        from stimgen.backends.emostyle.personalize import personalize, photo_valence_arousal
        from stimgen.backends.emostyle.steps import photo_step

        models = self.models
        ws = inverted["ws"].to(self.device, torch.float32)
        payload: dict[str, Any] = {"ws": ws.detach().cpu()}
        settings = self._personalize_settings()
        if settings.steps > 0:
            target = inverted["aligned"].permute(2, 0, 1)[None].float()
            target = (target / 127.5 - 1).to(self.device)
            with photo_step(identity_id, "personalisation", settings.steps) as progress:
                state = personalize(models.generator, models.mapping, models.emonet,
                                    models.vggface2, ws, target,
                                    inverted["landmarks"].numpy(), settings,
                                    progress=progress)
            payload["synthesis"] = {k: v.detach().cpu() for k, v in state.items()}
            payload["photo_va"] = photo_valence_arousal(models.emonet, target).cpu()
        return payload

    def _detector_sha256(self) -> str:
        """Fingerprint of the embedded face detector (the shipped MTCNN weights)."""
        from stimgen.detection import DETECTOR_SHA256

        return DETECTOR_SHA256

    def find_faces(self, image: np.ndarray) -> list:
        """Every face in a photo, largest first (:func:`stimgen.detection.detect_faces`)."""
        from stimgen.detection import detect_faces

        return detect_faces(image, device=str(self.device))

    def face_landmarks(self, image: np.ndarray, face) -> np.ndarray:
        """The 68 landmarks [68, 2] of a detected face: face-alignment's FAN inside its box.

        Personalisation needs all 68 (the face outline of the background term); alignment
        itself would do with the detector's 5 points.
        """
        from stimgen.nets.face_landmarks import FaceLandmarker

        landmarker = FaceLandmarker(self._weights["fan_2d"], device=str(self.device))
        return landmarker(image, boxes=[face.box])[0].points


@torch.no_grad()
def crop_landmarks(emonet: nn.Module, crops: np.ndarray, image_size: int,
                   resolution: int) -> np.ndarray:
    """68 landmarks [N, 68, 2] in output pixels, read off EmoNet's heatmaps of the crops.

    Generated faces are already aligned, so EmoNet's face-alignment trunk sees them as it
    was trained to; this gives the geometric rater its landmarks without a detector. The
    crops are :func:`~stimgen.nets.emonet.ffhq_framing` of the ``resolution``-pixel faces;
    their points are mapped back to the whole face, then to ``image_size`` pixels.
    """
    from stimgen.nets.emonet import unframe_points
    from stimgen.nets.face_landmarks import heatmaps_to_landmarks

    device = next(emonet.parameters()).device
    batch = torch.from_numpy(np.array(crops)).permute(0, 3, 1, 2).float().div(255).to(device)
    points, _ = heatmaps_to_landmarks(emonet(batch)["heatmap"], crops.shape[1])
    points = unframe_points(points.float().cpu(), resolution, crops.shape[1]).numpy()
    return (points + 0.5) * (image_size / resolution) - 0.5


def _rendered(faces: EditedFaces, reference: np.ndarray, landmarks) -> list[Rendered]:
    """One :class:`Rendered` per face: image, landmarks, framing, EmoNet crop, identity similarity.

    ``framing: "ffhq"`` tells raters the face is FFHQ-aligned; ``face_crop`` is EmoNet's
    input framed from the full-resolution face (finer than framing the output image).
    """
    similarity = faces.embeddings @ reference
    return [Rendered(Image.fromarray(image), points,
                     {FRAMING_KEY: FFHQ_FRAMING, "face_crop": crop,
                      "identity_similarity": float(score)})
            for image, crop, score, points in zip(faces.images, faces.crops, similarity,
                                                  landmarks)]
