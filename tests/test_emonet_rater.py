"""The EmoNet rater: which pixels it sees, clamping, its warning flag per backend, and that
describing it loads nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from stimgen.backends.base import Rendered
from stimgen.errors import WeightsMissingError
from stimgen.nets.emonet import EmoNet
from stimgen.raters import RATER_DESCRIPTIONS, Rater, RaterInfo, create_rater, describe_rater
from stimgen.raters.emonet import EmoNetRater, face_crops

INFO = RaterInfo("emonet", "test", trained_against_generator=True)


@pytest.fixture(scope="module")
def emonet():
    torch.manual_seed(0)
    return EmoNet(n_expression=8, num_modules=1, n_blocks=1).eval()


def random_crop(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8)


def test_the_face_crop_is_rated_not_the_output_image(emonet):
    crop = random_crop(1)
    blank = Image.new("RGB", (512, 512))
    with_crop = Rendered(blank, None, {"face_crop": crop})
    as_image = Rendered(Image.fromarray(crop), None, {})
    rater = EmoNetRater(emonet, INFO)
    np.testing.assert_allclose(rater.rate([with_crop], None), rater.rate([as_image], None),
                               atol=1e-6)
    assert not np.allclose(rater.rate([with_crop], None),
                           rater.rate([Rendered(blank, None, {})], None))


def test_images_without_a_crop_are_resized_to_256():
    face = Rendered(Image.fromarray(random_crop(2)).resize((512, 512)), None, {})
    batch = face_crops([face, Rendered(Image.new("L", (300, 300)), None, {})])
    assert batch.shape == (2, 3, 256, 256) and 0.0 <= float(batch.min()) <= float(batch.max()) <= 1.0


def test_ratings_match_emonet_and_are_clamped_to_the_circumplex(emonet):
    faces = [Rendered(Image.new("RGB", (8, 8)), None, {"face_crop": random_crop(s)})
             for s in range(3)]
    rater = EmoNetRater(emonet, INFO)
    with torch.no_grad():
        out = emonet(face_crops(faces))
    expected = torch.stack([out["valence"], out["arousal"]], 1).clamp(-1, 1).numpy()
    np.testing.assert_allclose(rater.rate(faces, None), expected, atol=1e-6)

    loud = EmoNet(n_expression=8, num_modules=1, n_blocks=1).eval()
    loud.load_state_dict(emonet.state_dict())
    with torch.no_grad():
        loud.emo_fc_2[3].bias[-2:] = torch.tensor([50.0, -50.0])   # valence, arousal far out
    ratings = EmoNetRater(loud, INFO).rate(faces, None)
    np.testing.assert_array_equal(ratings, np.tile([1.0, -1.0], (3, 1)))


def test_emonet_rater_flags_the_emostyle_backend_only(tmp_path, monkeypatch):
    from stimgen.weights.tiny import install_tiny, make_tiny

    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsMissingError, match="emonet_8.pth"):
        create_rater("emonet", "emostyle")
    paths = make_tiny(tmp_path / "tiny", resolution=8)
    install_tiny({"emonet_8": paths["emonet_8"]})
    with pytest.warns(UserWarning, match="TINY"):
        rater = create_rater("emonet", "emostyle")
    assert isinstance(rater, EmoNetRater) and isinstance(rater, Rater)
    assert rater.info == describe_rater("emonet", "emostyle")
    assert rater.info.name == "emonet" and rater.info.trained_against_generator
    with pytest.warns(UserWarning, match="TINY"):
        assert not create_rater("emonet", "schematic").info.trained_against_generator


def refuse_to_load(*args, **kwargs):
    raise AssertionError("EmoNet was loaded")


def test_describing_the_emonet_rater_loads_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("stimgen.backends.emostyle.models.load_network", refuse_to_load)
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "no-weights"))
    assert describe_rater("emonet", "emostyle") == RaterInfo(
        "emonet", RATER_DESCRIPTIONS["emonet"], trained_against_generator=True)
    assert not describe_rater("emonet", "schematic").trained_against_generator


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*TINY")
def test_a_build_does_not_load_emonet_to_describe_it(tmp_path, monkeypatch):
    """On a GPU machine the build's own process would hold a CUDA context for the whole
    build (on SLURM: load on the login node); only the processes that rate may load it."""
    import stimgen
    from stimgen.weights.tiny import install_tiny, make_tiny

    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    install_tiny({"emonet_8": make_tiny(tmp_path / "tiny", resolution=8)["emonet_8"]})
    path = tmp_path / "protocol.yaml"
    path.write_text("study: {name: described}\nidentities: [{id: id01, seed: 1}]\n"
                    "targets: {emotions: [circumplex:happy], intensities: [1.0]}\n"
                    "validation: {rater: emonet}\noutput: {image_size: 64}\n")
    protocol = stimgen.load_protocol(path)
    out = tmp_path / "build"
    stimgen.build(protocol, out=out, progress=False, jobs=1)       # rates: loads EmoNet
    # Rebuilt, the finished identity is reused: nothing is rated, so nothing may load.
    monkeypatch.setattr("stimgen.backends.emostyle.models.load_network", refuse_to_load)
    result = stimgen.build(protocol, out=out, progress=False, jobs=1)
    assert result.reused_identities == ["id01"]
    assert result.manifest["rater"]["name"] == "emonet"
    assert not result.manifest["rater"]["trained_against_generator"]
