"""Tests of experiments/predict.py: a user's own images in, one JSON and one overlay per image
out; bad input skipped and counted, or refused before anything is written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiments import predict
from experiments.configs import tiny
from maskpose_jax import cascade
from maskpose_jax import checkpoint
from maskpose_jax import factory
from maskpose_jax import sharding
from maskpose_jax import skeleton

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A run's checkpoint (untrained parameters, the tiny config): what predict restores."""
    path = tmp_path_factory.mktemp("run")
    config = tiny.get_config()
    detector, physique = factory.create_models(config)
    optimizer = cascade.make_optimizer(config.stages, config.train)
    state = factory.init_state(config, detector, physique, optimizer, 32, sharding.make_mesh(), 5)
    with checkpoint.Checkpointer(str(path / "checkpoints")) as saver:
        saver.save(0, state, {}, {"config": config.to_json_best_effort(), "image_size": 32,
                                  "fit_cache_size": 5}, force=True)
    return path


def _person(height=90, width=60, box=(20, 10, 70, 40)):
    """An image with a bright box on grey and its mask (box: top, left, bottom, right)."""
    image = np.full((height, width, 3), 90, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    top, left, bottom, right = box
    image[top:bottom, left:right] = (200, 150, 120)
    mask[top:bottom, left:right] = 255
    return image, mask


@pytest.fixture
def inputs(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ("a", "b"):
        image, mask = _person()
        Image.fromarray(image).save(images / f"{name}.jpg")
        Image.fromarray(mask).save(masks / f"{name}.png")
    image, _ = _person()
    Image.fromarray(image).save(images / "empty.png")
    Image.fromarray(np.zeros((90, 60), np.uint8)).save(masks / "empty.png")
    Image.fromarray(image).save(images / "small.png")
    Image.fromarray(np.full((30, 20), 255, np.uint8)).save(masks / "small.png")
    (images / "broken.jpg").write_bytes(b"not an image")
    Image.fromarray(_person()[1]).save(masks / "broken.png")
    Image.fromarray(image).save(images / "unmasked.png")
    return images, masks


def _run(workdir, *args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "experiments.predict", "--config=tiny.py",
                           f"--workdir={workdir}", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_predicts_and_counts_the_bad_inputs(workdir, inputs, tmp_path):
    images, masks = inputs
    out = tmp_path / "out"
    done = _run(workdir, f"--images={images}", f"--masks={masks}", f"--out={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["predicted"] == 2 and summary["skipped"] == 4
    reasons = {os.path.basename(s["input"]): s["reason"] for s in summary["skips"]}
    assert "cannot be decoded" in reasons["broken.jpg"]
    assert "empty" in reasons["empty.png"]
    assert "20×30" in reasons["small.png"] and "small.png" in reasons["small.png"]
    assert "no mask" in reasons["unmasked.png"]
    assert sorted(os.listdir(out)) == ["a.json", "a.png", "b.json", "b.png", "summary.json"]
    record = json.loads((out / "a.json").read_text())
    assert list(record["joints_2d_px"]) == list(skeleton.JOINT_NAMES)
    joints_3d = np.array(list(record["joints_3d_mm"].values()))
    assert joints_3d.shape == (17, 3) and np.allclose(joints_3d[skeleton.PELVIS], 0)
    # 2D in image pixels: the crop's inverse applied to the normalized keypoints.
    crop = np.array(record["crop_2x3"])
    xy = np.array(list(record["keypoints_normalized"].values()))[:, :2]
    crop_px = (xy + 1) * (32 - 1) / 2
    full = (crop_px - crop[:, 2]) / crop[0, 0]
    np.testing.assert_allclose(np.array(list(record["joints_2d_px"].values())), full, atol=0.02)
    # The crop is the mask's box (rows 20-70, columns 10-40) with the 15% margin.
    side = 50 * 1.3
    np.testing.assert_allclose(crop[0, 0], 32 / side, rtol=1e-5)
    overlay = np.asarray(Image.open(out / "a.png"))
    assert overlay.shape == (256, 3 * 256 + 2 * 2, 3)


def test_error_mode_writes_nothing(workdir, inputs, tmp_path):
    images, masks = inputs
    out = tmp_path / "out"
    done = _run(workdir, f"--images={images}", f"--masks={masks}", f"--out={out}",
                "--on_bad_input=error")
    assert done.returncode != 0
    assert "broken.jpg" in done.stderr and "small.png" in done.stderr
    assert not out.exists()


def test_whole_images_and_missing_checkpoint(workdir, inputs, tmp_path):
    images, _ = inputs
    os.remove(images / "broken.jpg")
    out = tmp_path / "out"
    done = _run(workdir, f"--images={images}/*.png", f"--out={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["predicted"] == 3
    record = json.loads((out / "unmasked.json").read_text())
    # Whole 60 x 90 image: a centred square of side 90.
    np.testing.assert_allclose(np.array(record["crop_2x3"])[0, 0], 32 / 90, rtol=1e-5)
    empty = tmp_path / "empty_run"
    empty.mkdir()
    missing = _run(empty, f"--images={images}")
    assert missing.returncode != 0 and "no checkpoint" in missing.stderr
    nothing = _run(workdir, f"--images={tmp_path}/nothing/*.jpg")
    assert nothing.returncode != 0 and "--images" in nothing.stderr


def test_pairing_names_duplicates_and_missing_masks():
    pairs, bad = predict.pair_inputs(["x/a.jpg", "y/a.png", "x/b.jpg", "x/c.jpg"],
                                     ["m/a.png", "m/b.png", "m/b.jpg"])
    assert pairs == [("a", "x/a.jpg", "m/a.png")]
    assert [path for path, _ in bad] == ["y/a.png", "x/b.jpg", "x/c.jpg"]
    assert "collide" in bad[0][1] and "several masks" in bad[1][1] and "no mask" in bad[2][1]
    assert predict.pair_inputs(["x/a.jpg"], None) == ([("a", "x/a.jpg", None)], [])
