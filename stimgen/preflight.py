"""What a build will refuse, checked before anything is drawn: every photo opened the way the
build opens it, and every optional package the protocol needs, with the command that installs it.

`stimgen validate` and `stimgen build` run the same checks (the build before its first face),
with the functions the build itself reads photos and finds faces with, so a photo that would
stop the build on its fifth identity stops it, and validate, before the first: one code path.
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from stimgen.errors import BackendUnavailableError, StimgenError
from stimgen.packages import (FACE_ALIGNMENT, FFMPEG, JAVASCRIPTHON, ONNXRUNTIME, PSYCHOPY,
                              OptionalPackage)
from stimgen.protocol.models import Protocol
from stimgen.settings import never_installed, rating_spec


# -- optional packages (stimgen/packages.py) --------------------------------------------------
def needed_packages(protocol: Protocol, raters: tuple[str, ...] = ()) -> list[OptionalPackage]:
    """The optional packages a build of ``protocol`` imports.

    ``raters``: every rater the build loads (:func:`stimgen.plan.resolve_raters`);
    by default those of :func:`stimgen.settings.rating_spec` without asking what is installed
    (the steering rater of a correction included).

    >>> from stimgen.protocol.models import Protocol
    >>> protocol = Protocol.model_validate({"study": {"name": "x"},
    ...     "identities": [{"id": "a", "seed": 1}], "targets": {"emotions": ["happy"]},
    ...     "experiment": {"online": True}})
    >>> [p.name for p in needed_packages(protocol)]
    ['psychopy', 'javascripthon']
    """
    raters = raters or rating_spec(protocol.validation, protocol.backend.name,
                                   installed=never_installed).names
    needed = []
    if protocol.backend.name == "emostyle" and any(i.kind == "image"
                                                   for i in protocol.identities):
        needed.append(FACE_ALIGNMENT)
    if protocol.experiment is not None:
        needed.append(PSYCHOPY)
        if protocol.experiment.online:
            needed.append(JAVASCRIPTHON)
    if "hsemotion" in raters:
        needed.append(ONNXRUNTIME)
    if protocol.output.dynamic is not None:
        needed.append(FFMPEG)
    return needed


class PackagesMissingError(BackendUnavailableError):
    """Optional packages the protocol needs that cannot be imported here."""

    def __init__(self, missing: list[tuple[OptionalPackage, str]]):
        self.missing = missing
        lines = [f"{len(missing)} package(s) this protocol needs cannot be imported here:"]
        for package, reason in missing:
            lines += [f"  - {package.name}, for {package.needed_for}: {reason}",
                      f"    install: {package.install}"]
        super().__init__("\n".join(lines),
                         hint="run the install command(s) above in the environment that runs "
                              "stimgen, then the same command again")


def missing_packages(protocol: Protocol, raters: tuple[str, ...] = (),
                     importer: Callable[[OptionalPackage], None] | None = None
                     ) -> PackagesMissingError | None:
    """The optional packages of :func:`needed_packages` that cannot be imported, as one
    error naming each with why and its install command; None when all import.

    A package counts as missing when importing it fails for any reason: not installed, too
    old, or broken (face-alignment's OpenCV without the system's libGL, for instance).
    """
    importer = importer or import_package
    missing = []
    for package in needed_packages(protocol, raters):
        try:
            importer(package)
        except StimgenError as err:
            missing.append((package, err.message))
        except Exception as err:        # noqa: BLE001 - an import may fail in any way
            missing.append((package, _import_failure(package, err)))
    return PackagesMissingError(missing) if missing else None


def import_package(package: OptionalPackage) -> None:
    """Import ``package`` the way the build will (face-alignment through its adapter, which
    also checks its version; PsychoPy quietly); raises what the import raises."""
    if package is FACE_ALIGNMENT:
        from stimgen.nets.face_landmarks import import_face_alignment

        import_face_alignment()
    elif package is PSYCHOPY:
        from stimgen.export.psychopy_bundle import psychopy_experiment_module

        psychopy_experiment_module()
    elif package is FFMPEG:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()      # the wheel's ffmpeg, or $IMAGEIO_FFMPEG_EXE
    else:
        importlib.import_module(package.module)


def _import_failure(package: OptionalPackage, error: Exception) -> str:
    if isinstance(error, ModuleNotFoundError) and importlib.util.find_spec(
            package.module.split(".")[0]) is None:
        return "not installed"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "libGL" in text or "libgthread" in text:
        text += " (OpenCV, which face-alignment uses, needs the system's OpenGL library: " \
                "on Debian/Ubuntu `sudo apt-get install libgl1`)"
    return f"installed but cannot be imported: {text}"


# -- photos ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PhotoProblem:
    """A photo the build would refuse: the protocol field naming it and why."""

    field: tuple                      # ("identities", 3, "image") or ("targets", "from_images", 0)
    message: str
    hint: str | None


@dataclass(frozen=True)
class PhotoCheck:
    """What checking a protocol's photos found: problems (the build would stop) and warnings."""

    problems: list[PhotoProblem]
    warnings: list[str]
    checked: int                      # photos opened


def photos_of(protocol: Protocol, *, references: bool = True) -> list[tuple[tuple, str, str]]:
    """Every photo a build of ``protocol`` reads, as (field, what it is, path as written):
    the photos of emostyle identities and, with ``references``, ``targets.from_images``."""
    photos = [(("identities", index, "image"), f'identity "{identity.id}"', identity.image)
              for index, identity in enumerate(protocol.identities)
              if identity.image is not None and protocol.backend.name == "emostyle"]
    if references:
        photos += [(("targets", "from_images", index), "reference face", path)
                   for index, path in enumerate(protocol.targets.from_images)]
    return photos


def check_photos(protocol: Protocol, *, references: bool = True, detect: bool = True,
                 device: str = "cpu", progress: Callable[[int, int], None] | None = None
                 ) -> PhotoCheck:
    """Open every photo as the build will and find its face; collect what the build refuses.

    Parameters
    ----------
    protocol : Protocol
    references : bool
        Check ``targets.from_images`` too (the build rates them first thing, so it finds
        their problems at once; `stimgen validate` checks them here).
    detect : bool
        Run the face detector (the build does, on every photo): a photo without a face, or
        with several where ``multiple_faces: error``, is refused.
    device : str
        Torch device of the detector.
    progress : callable, optional
        Called with (photos done, photos in all) after each photo.

    Returns
    -------
    PhotoCheck
        One problem per refused photo, naming the file and the identity (or reference), and
        the warnings the build would show (a photo with several faces).
    """
    photos = photos_of(protocol, references=references)
    problems, found = [], []
    for done, (field, what, written) in enumerate(photos, start=1):
        path = protocol.resolve(written)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                open_photo(protocol, path, identity=field[0] == "identities",
                           detect=detect, device=device)
            except StimgenError as err:
                problems.append(PhotoProblem(field, f"{what}: {err.message}", err.hint))
        found += [f"{what}: {w.message}" for w in caught
                  if w.category.__module__.split(".")[0] == "stimgen"]
        if progress is not None:
            progress(done, len(photos))
    return PhotoCheck(problems, found, len(photos))


def open_photo(protocol: Protocol, path: Path, *, identity: bool, detect: bool = True,
               device: str = "cpu") -> None:
    """Read one photo and find its face exactly as the build does; raises the StimgenError the
    build would raise (the message names the file).

    An identity photo is read by :func:`stimgen.photos.load_photo` and its
    face chosen by ``backend.options.multiple_faces``; a reference face is read and located as
    `stimgen rate --framing detect` does (:mod:`stimgen.raters.images`).
    """
    if identity:
        from stimgen.photos import load_photo

        image = load_photo(path)
        if detect:
            from stimgen.detection import choose_face, detect_faces

            choose_face(detect_faces(image, device=device), source=str(path),
                        policy=protocol.backend.options.multiple_faces)
    else:
        from stimgen.raters.images import locate_face, read_image

        image = read_image(path)
        if detect:
            locate_face(image, str(path), "detect")


def photo_error(protocol: Protocol, problems: list[PhotoProblem]):
    """The ProtocolError of refused photos, each at its line of the protocol file."""
    from stimgen.protocol.loader import protocol_problems

    return protocol_problems(protocol, [(p.field, p.message, p.hint) for p in problems])
