"""Parity fixtures: proof that our networks compute what the published reference code computes.

Owns the fixture format (``NAME.json`` weights spec + ``NAME.npz`` inputs/outputs), the
deterministic fill rule that rebuilds the weights and the comparison; ``stimgen parity DIR``
(:mod:`stimgen.cli.parity`) runs it.

A fixture was produced by running a reference implementation with weights drawn by the fill
rule; rebuilding the same weights into our network (by the same key names) must reproduce
every output array within ``numpy.allclose(rtol=1e-3, atol=1e-5)``. See docs/parity.md.
"""
from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stimgen.errors import StimgenError

#: Relative and absolute tolerance of every comparison, as in ``numpy.allclose``.
RTOL, ATOL = 1e-3, 1e-5


class ParityFixtureError(StimgenError):
    """A fixture folder or file that cannot be read as a parity fixture."""


@dataclass(frozen=True)
class ParityRow:
    """The comparison of one output array of one fixture."""

    fixture: str          # fixture name, e.g. "emonet8"
    array: str            # output array name in the fixture's .npz, e.g. "valence"
    max_abs_err: float    # max |ours - reference|; inf when ours could not be computed
    tolerance: str        # the allclose criterion applied
    passed: bool
    note: str = ""        # why the array could not be compared, when it could not


# ----------------------------------------------------------------------------- fill rule

def tensor_from_spec(name: str, spec: Mapping) -> torch.Tensor:
    """Rebuild one state-dict entry from its fixture spec.

    Explicit ``values`` are used as given; otherwise the entry is standard-normal noise
    from a CPU ``torch.Generator`` seeded with the CRC-32 of ``name``, scaled by ``std``
    and shifted by ``mean`` (in float32, then cast to ``dtype``).
    """
    dtype = getattr(torch, spec["dtype"])
    if "values" in spec:
        return torch.tensor(spec["values"], dtype=dtype).reshape(spec["shape"])
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    noise = torch.randn(tuple(spec["shape"]), generator=generator, dtype=torch.float32)
    return (noise * spec["std"] + spec["mean"]).to(dtype)


def state_dict_from_spec(state_spec: Mapping[str, Mapping]) -> dict[str, torch.Tensor]:
    """The full state dict of a fixture: ``{key: tensor_from_spec(key, spec)}``."""
    return {name: tensor_from_spec(name, spec) for name, spec in state_spec.items()}


# ----------------------------------------------------------------------------- fixtures

@dataclass(frozen=True)
class Fixture:
    """One fixture on disk: the network spec and its recorded arrays."""

    name: str
    constructor: dict            # keyword arguments of the network's constructor
    state_spec: dict             # state-dict key -> {shape, dtype, values | mean, std}
    arrays: dict[str, np.ndarray]

    def build(self, network_class: type[torch.nn.Module], device: str) -> torch.nn.Module:
        """Construct the network, load the fill-rule weights strictly, eval mode."""
        network = network_class(**self.constructor)
        network.load_state_dict(state_dict_from_spec(self.state_spec), strict=True)
        return network.eval().to(device)

    def input(self, name: str, device: str) -> torch.Tensor:
        return torch.from_numpy(self.arrays[name]).to(device)


def read_fixture(directory: Path, name: str) -> Fixture:
    """Read ``NAME.json`` and ``NAME.npz`` from ``directory``."""
    spec_path, arrays_path = directory / f"{name}.json", directory / f"{name}.npz"
    if not arrays_path.is_file():
        raise ParityFixtureError(
            f"{spec_path}: found the weights spec but not its arrays {arrays_path.name}",
            hint="copy both files of each fixture (NAME.json and NAME.npz)")
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        return Fixture(name, dict(spec.get("constructor", {})), spec["state_dict"], arrays)
    except (OSError, ValueError, KeyError) as err:
        raise ParityFixtureError(
            f"{directory / name}.{{json,npz}}: not a readable parity fixture ({err})",
            hint="fixtures are the JSON weights spec and NPZ arrays written by the "
                 "reference scripts; re-copy them") from err


# ----------------------------------------------------------------------------- runners
# Each runner rebuilds one network and returns our value of every output array.

def run_stylegan2_ada(fixture: Fixture, device: str) -> dict[str, torch.Tensor]:
    from stimgen.nets.stylegan2 import Generator

    G = fixture.build(Generator, device)
    psi = float(fixture.arrays["truncation_psi"])
    ws = G.mapping(fixture.input("z", device), None, truncation_psi=psi)
    return {
        "ws": ws,
        "images": G.synthesis(ws, noise_mode="const", force_fp32=True),
        "images_plus": G.synthesis(fixture.input("ws_plus", device), noise_mode="const",
                                   force_fp32=True),
    }


def run_emo_mapping_wplus(fixture: Fixture, device: str) -> dict[str, torch.Tensor]:
    from stimgen.nets.emo_mapping import EmoMappingWplus

    mapping = fixture.build(EmoMappingWplus, device)
    return {"delta": mapping(fixture.input("latents", device), fixture.input("emotions", device))}


def run_emonet8(fixture: Fixture, device: str) -> dict[str, torch.Tensor]:
    from stimgen.nets.emonet import EmoNet

    net = fixture.build(EmoNet, device)
    out = net(fixture.input("image_uint8", device).float() / 255.0)
    return {key: out[key] for key in ("valence", "arousal", "expression", "heatmap")}


def run_vggface2_resnet50(fixture: Fixture, device: str) -> dict[str, torch.Tensor]:
    from stimgen.nets.vggface2 import ResNet50Face, identity_embedding

    net = fixture.build(ResNet50Face, device)
    return {"embedding": identity_embedding(net, fixture.input("image", device))}


Runner = Callable[[Fixture, str], Mapping[str, torch.Tensor]]

#: Fixture name -> (runner, output arrays it is checked on), in the order they are run.
RUNNERS: dict[str, tuple[Runner, tuple[str, ...]]] = {
    "stylegan2_ada": (run_stylegan2_ada, ("ws", "images", "images_plus")),
    "emo_mapping_wplus": (run_emo_mapping_wplus, ("delta",)),
    "emonet8": (run_emonet8, ("valence", "arousal", "expression", "heatmap")),
    "vggface2_resnet50": (run_vggface2_resnet50, ("embedding",)),
}


# ----------------------------------------------------------------------------- comparison

def compare_array(fixture: str, array: str, ours, reference: np.ndarray) -> ParityRow:
    """One row: max abs error and whether ``allclose(ours, reference, RTOL, ATOL)``."""
    tolerance = f"rtol={RTOL:g} atol={ATOL:g}"
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        return ParityRow(fixture, array, math.inf, tolerance, False,
                         f"shape {ours.shape} != reference {reference.shape}")
    if ours.size == 0:
        return ParityRow(fixture, array, 0.0, tolerance, True)
    error = float(np.max(np.abs(ours - reference)))
    passed = bool(np.allclose(ours, reference, rtol=RTOL, atol=ATOL))
    return ParityRow(fixture, array, error if math.isfinite(error) else math.inf,
                     tolerance, passed)


def failed_rows(fixture: str, arrays: tuple[str, ...], note: str) -> list[ParityRow]:
    tolerance = f"rtol={RTOL:g} atol={ATOL:g}"
    return [ParityRow(fixture, array, math.inf, tolerance, False, note) for array in arrays]


def check_fixture(fixture: Fixture, device: str = "cpu") -> list[ParityRow]:
    """Run one fixture through our network and compare every output array.

    A network that cannot be built or run (missing module, state-dict mismatch, shape
    error) fails all of the fixture's rows with the reason in ``note``, instead of
    stopping the run: the report then shows everything that is wrong at once.
    """
    runner, outputs = RUNNERS[fixture.name]
    missing = [name for name in outputs if name not in fixture.arrays]
    if missing:
        return failed_rows(fixture.name, tuple(missing),
                           "output array missing from the fixture's .npz")
    try:
        with torch.no_grad():
            ours = runner(fixture, device)
    except Exception as err:  # noqa: BLE001 - any failure is a failed row, not a crash
        return failed_rows(fixture.name, outputs, f"{type(err).__name__}: {err}")
    return [compare_array(fixture.name, name, ours[name].detach().cpu().numpy(),
                          fixture.arrays[name]) for name in outputs]


def find_fixtures(directory: str | Path) -> list[str]:
    """Names of the known fixtures whose ``NAME.json`` is in ``directory``, in run order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ParityFixtureError(f"{directory}: not a directory",
                                 hint="pass the folder holding the NAME.json/NAME.npz fixtures")
    return [name for name in RUNNERS if (directory / f"{name}.json").is_file()]


def run_parity(directory: str | Path, device: str = "cpu") -> list[ParityRow]:
    """Run every known fixture found in ``directory``; one row per output array.

    Raises :class:`ParityFixtureError` when the folder holds no known fixture.

    >>> rows = run_parity("tests/data/parity")          # doctest: +SKIP
    >>> all(row.passed for row in rows)                 # doctest: +SKIP
    True
    """
    directory = Path(directory)
    names = find_fixtures(directory)
    if not names:
        raise ParityFixtureError(
            f"{directory}: no parity fixtures found",
            hint="expected one or more of " + ", ".join(f"{n}.json+{n}.npz" for n in RUNNERS))
    with reference_precision():
        return [row for name in names
                for row in check_fixture(read_fixture(directory, name), device)]


class reference_precision:
    """Context manager turning off TF32 matmuls/convolutions on CUDA for the comparison."""

    def __enter__(self):
        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved
