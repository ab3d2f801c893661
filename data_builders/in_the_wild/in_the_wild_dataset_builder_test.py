"""Builds `in_the_wild` over `dummy_data/` (2 videos × 6 frames, PNG and JPEG frames, grey and RGB
masks) and checks every field, the crop against the drawn silhouette, determinism, the options
and every bad input (as an error naming the file, and as a counted skip)."""

import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import data_builders
from data_builders import frames
from data_builders import geodesic
from data_builders import testing
from data_builders.in_the_wild import in_the_wild_dataset_builder as wild
from data_builders.in_the_wild import make_dummy_data
from maskpose_jax import geometry
from maskpose_jax import input_pipeline
from maskpose_jax import skeleton

DUMMY_DIR = make_dummy_data.DUMMY_DIR
N = 32


def _build(data_dir, **options):
    options = {"root_dir": DUMMY_DIR, "image_size": N, **options}
    builder = wild.Builder(config=wild.make_config(**options), data_dir=str(data_dir),
                           file_format="array_record")
    builder.download_and_prepare()
    return builder


def _examples(builder):
    return [input_pipeline.decode_example(r) for r in builder.as_data_source("train")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("tfds"))


def test_name_and_splits(built):
    assert wild.Builder.name == "in_the_wild"
    assert list(built.info.splits) == ["train"]
    assert built.info.splits["train"].num_examples == 2 * make_dummy_data.NUM_FRAMES


def test_fields(built):
    examples = _examples(built)
    shapes = {"image": (1, N, N, 3), "mask": (1, N, N), "weight": (1, N, N),
              "intrinsics": (1, 3, 3), "extrinsics": (1, 3, 4), "crop": (1, 2, 3),
              "distortion": (1, 5), "joints_world": (skeleton.NUM_JOINTS, 3)}
    focal = 1.2 * max(make_dummy_data.WIDTH, make_dummy_data.HEIGHT)
    intrinsics = [[focal, 0, (make_dummy_data.WIDTH - 1) / 2],
                  [0, focal, (make_dummy_data.HEIGHT - 1) / 2], [0, 0, 1]]
    for example in examples:
        for key, shape in shapes.items():
            assert example[key].shape == shape, key
        assert example["image"].dtype == np.uint8
        assert np.isnan(example["joints_world"]).all()
        np.testing.assert_allclose(example["intrinsics"][0], intrinsics, rtol=1e-6)
        np.testing.assert_array_equal(example["extrinsics"][0], np.eye(3, 4))
        np.testing.assert_array_equal(example["distortion"], 0.0)
        assert example["action"] == "in_the_wild"
        np.testing.assert_allclose(example["weight"][0], geodesic.weight_map(example["mask"][0]),
                                   rtol=2e-3, atol=2e-2)
    keys = sorted((e["subject"], int(e["frame"])) for e in examples)
    assert keys == [(v, f) for v in ("00001", "00002") for f in range(make_dummy_data.NUM_FRAMES)]
    raw = built.as_data_source("train")[0]
    assert [c.decode() for c in raw["meta"]["camera"]] == ["unknown"]


def test_crop_and_mask_follow_the_drawn_silhouette(built):
    inside = []
    for example in _examples(built):
        video, frame = example["subject"], int(example["frame"])
        _, drawn_HxW = make_dummy_data.draw(video, frame)
        crop = example["crop"][0].astype(np.float64)
        # The crop is the mask-box crop of the silhouette that was drawn.
        np.testing.assert_allclose(
            crop, frames.crop_from_mask_bbox(frames.mask_bbox(drawn_HxW), N), atol=1e-4)
        mask = example["mask"][0]
        # Points well inside the drawn person land on the stored mask ...
        uv = np.asarray(geometry.apply_affine(crop, make_dummy_data.inside_points_uv(video, frame)))
        assert np.all((uv > -0.5) & (uv < N - 0.5))
        cols, rows = np.rint(uv).astype(int).T
        inside.append(mask[rows, cols] > 0.5)
        # ... the torso centre (third ellipse) lands on the shirt in the stored image ...
        torso = 3 * 2
        assert mask[rows[torso], cols[torso]] > 0.9
        shirt = np.asarray(make_dummy_data.SHIRT)
        assert np.abs(example["image"][0][rows[torso], cols[torso]] - shirt).max() < 20
        # ... and the crop's margin is background.
        border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
        assert border.max() < 0.05
    assert np.mean(np.concatenate(inside)) > 0.9


def test_same_options_give_identical_files(built, tmp_path):
    again = testing.build_in_new_process("in_the_wild", str(tmp_path),
                                         {"root_dir": DUMMY_DIR, "image_size": N})
    testing.assert_same_records(built, again)


def test_videos_and_frame_stride(tmp_path):
    builder = _build(tmp_path, videos="00002", frame_stride=2)
    examples = _examples(builder)
    assert sorted(int(e["frame"]) for e in examples) == [0, 2, 4]
    assert {e["subject"] for e in examples} == {"00002"}


def test_options(tmp_path):
    with pytest.raises(ValueError, match="root_dir"):
        wild.make_config()
    with pytest.raises(FileNotFoundError, match="no_such_root"):
        wild.make_config(root_dir=str(tmp_path / "no_such_root"))
    for option, value in [("image_size", 4), ("on_bad_input", "ignore"), ("frame_stride", 0),
                          ("focal_ratio", 0.0), ("videos", "00001,,00002"), ("videos", "a/b")]:
        with pytest.raises(ValueError, match=option):
            wild.make_config(root_dir=DUMMY_DIR, **{option: value})
    with pytest.raises(ValueError, match="frame_stride"):
        data_builders.parse_option("in_the_wild", "frame_stride", "every")
    assert data_builders.parse_option("in_the_wild", "focal_ratio", "1.5") == 1.5
    # Names: stable, order-free for `videos`, distinct for other roots and values.
    a = wild.make_config(root_dir=DUMMY_DIR, videos="00002,00001", focal_ratio=1.5)
    b = wild.make_config(root_dir=DUMMY_DIR + "/", videos="00001, 00002", focal_ratio=1.5)
    assert a.name == b.name and a.videos == "00001,00002"
    assert "focal_ratio-1p5" in a.name
    assert wild.make_config(root_dir=str(tmp_path)).name != wild.make_config(root_dir=DUMMY_DIR).name
    assert wild.Builder.BUILDER_CONFIGS[0].name == "default"


def test_read_mask_threshold_and_colour_forms(tmp_path):
    grey = np.array([[0, 127, 128, 255]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(wild.read_mask(str(tmp_path / "grey.png")), [[0, 0, 1, 1]])
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 1, 0] = 200  # pure red foreground (a luminance conversion would drop it)
    rgb[0, 2] = 255
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(wild.read_mask(str(tmp_path / "rgb.png")), [[0, 1, 1]])
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.png")
    np.testing.assert_array_equal(wild.read_mask(str(tmp_path / "palette.png")), [[0, 0, 1, 1]])


# --- Bad inputs ------------------------------------------------------------------------------


def _damage(root, fault):
    """Applies `fault` to video 00001 of a copy of the dummy data; returns the path to name."""
    video = root / "00001"
    if fault == "missing_mask":
        (video / "masks" / "0002.png").unlink()
        return video / "masks" / "0002.png"
    if fault == "mask_size":
        Image.new("L", (make_dummy_data.WIDTH - 4, make_dummy_data.HEIGHT), 255).save(
            video / "masks" / "0003.png")
        return video / "masks" / "0003.png"
    if fault == "empty_mask":
        Image.new("L", (make_dummy_data.WIDTH, make_dummy_data.HEIGHT), 0).save(
            video / "masks" / "0004.png")
        return video / "masks" / "0004.png"
    if fault == "unreadable_file":
        path = video / "images" / "0005.png"
        path.write_bytes(path.read_bytes()[:300])
        return path
    if fault == "missing_video":
        shutil.rmtree(video / "masks")
        return video / "masks"
    raise ValueError(fault)


FAULTS = {"missing_mask": "no mask for frame", "mask_size": "mask is 60×96 pixels",
          "empty_mask": "empty", "unreadable_file": "cannot be decoded",
          "missing_video": "no such folder"}


def _copy(tmp_path, videos=("00001",)):
    root = tmp_path / "root"
    for video in videos:
        shutil.copytree(os.path.join(DUMMY_DIR, video), root / video)
    return root


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bad_input_is_an_error_naming_the_file(tmp_path, fault):
    root = _copy(tmp_path)
    path = _damage(root, fault)
    builder = wild.Builder(config=wild.make_config(root_dir=str(root), image_size=N),
                           data_dir=str(tmp_path / "tfds"), file_format="array_record")
    with pytest.raises(frames.BadInput, match=FAULTS[fault]) as error:
        builder.download_and_prepare()
    assert str(path) in str(error.value)
    testing.assert_nothing_finished(builder)


def test_bad_inputs_are_counted_skips(tmp_path, caplog):
    root = _copy(tmp_path, videos=("00001", "00002"))
    for fault in ("missing_mask", "mask_size", "empty_mask", "unreadable_file"):
        _damage(root, fault)
    caplog.set_level(logging.INFO)
    builder = _build(tmp_path / "tfds", root_dir=str(root), on_bad_input="skip",
                     videos="00001,00002,00003")
    frames_kept = sorted((e["subject"], int(e["frame"])) for e in _examples(builder))
    assert frames_kept == ([("00001", f) for f in (0, 5)]
                           + [("00002", f) for f in range(make_dummy_data.NUM_FRAMES)])
    assert ("in_the_wild train: skipped inputs: 1 empty_mask, 1 mask_size, 1 missing_mask, "
            "1 missing_video, 1 unreadable_file") in caplog.text
    assert "00003: no such video folder" in caplog.text


def test_nothing_left_to_build_fails(tmp_path):
    root = _copy(tmp_path)
    shutil.rmtree(root / "00001" / "masks")
    (root / "00001" / "masks").mkdir()
    builder = wild.Builder(
        config=wild.make_config(root_dir=str(root), image_size=N, on_bad_input="skip"),
        data_dir=str(tmp_path / "tfds"), file_format="array_record")
    with pytest.raises(frames.BadInput, match="no example could be made"):
        builder.download_and_prepare()
    testing.assert_nothing_finished(builder)


def test_missing_root_and_empty_root(tmp_path):
    root = _copy(tmp_path)
    config = wild.make_config(root_dir=str(root), image_size=N)
    shutil.rmtree(root)
    builder = wild.Builder(config=config, data_dir=str(tmp_path / "tfds"),
                           file_format="array_record")
    with pytest.raises(FileNotFoundError, match=str(root)):
        builder.download_and_prepare()
    testing.assert_nothing_finished(builder)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes").mkdir()
    builder = wild.Builder(config=wild.make_config(root_dir=str(tmp_path / "empty")),
                           data_dir=str(tmp_path / "tfds"), file_format="array_record")
    with pytest.raises(FileNotFoundError, match="no video folder"):
        builder.download_and_prepare()


def test_dummy_data_script_regenerates_the_committed_data(tmp_path):
    out = tmp_path / "dummy"
    assert make_dummy_data.main(["--out", str(out)]) == 0
    committed, regenerated = testing.tree_files(DUMMY_DIR), testing.tree_files(out)
    assert committed == regenerated and len(committed) == 4 * make_dummy_data.NUM_FRAMES
    for name in committed:
        a = np.asarray(Image.open(os.path.join(DUMMY_DIR, name)), np.int32)
        b = np.asarray(Image.open(out / name), np.int32)
        if name.endswith(".png"):
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:  # JPEG: the same within a decoder's rounding
            assert np.abs(a - b).mean() < 1.0, name
    assert sum(os.path.getsize(os.path.join(DUMMY_DIR, n)) for n in committed) < 1_000_000
