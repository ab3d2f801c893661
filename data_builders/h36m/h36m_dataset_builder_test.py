"""Builds `h36m` over `dummy_data/` (S1 train, S9 test, 4 cameras, 128-pixel videos) and over a
copy with broken files; checks every field, the geometry, each mask source, frame selection,
the bad-input policy, determinism and the option errors."""

import os
import re
import shutil

import cdflib
import numpy as np
import pytest

import data_builders
from data_builders import frames
from data_builders import geodesic
from data_builders import testing
from data_builders.h36m import calibration
from data_builders.h36m import h36m_dataset_builder as h36m
from data_builders.h36m import make_dummy_data
from data_builders.h36m import release
from maskpose_jax import geometry
from maskpose_jax import input_pipeline
from maskpose_jax import skeleton

DUMMY_DIR = os.path.join(os.path.dirname(__file__), "dummy_data")
PNG_DIR = os.path.join(DUMMY_DIR, "segmentations")
OPTIONS = dict(root_dir=DUMMY_DIR, image_size=32, train_subjects="S1", test_subjects="S9",
               frame_stride=2)
V, N = 4, 32


def _build(data_dir, **options):
    builder = h36m.Builder(config=h36m.make_config(**{**OPTIONS, **options}),
                           data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return builder


def _examples(builder, split):
    return [input_pipeline.decode_example(r) for r in builder.as_data_source(split)]


def _frames_by_action(examples):
    out = {}
    for e in examples:
        out.setdefault((e["subject"], e["action"]), set()).add(int(e["frame"]))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("tfds"))


def _inside_fraction(examples):
    inside = []
    for e in examples:
        for view in range(V):
            px_Jx2 = geometry.project(e["joints_world"], e["intrinsics"][view],
                                      e["extrinsics"][view], e["distortion"][view])
            uv_Jx2 = np.asarray(geometry.apply_affine(e["crop"][view], px_Jx2))
            cols, rows = np.clip(np.rint(uv_Jx2).astype(int), 0, N - 1).T
            inside.append(e["mask"][view][rows, cols] > 0.2)
    return np.mean(inside)


def test_builds_both_splits_with_every_field(built):
    assert h36m.Builder.name == "h36m"
    assert {s: built.info.splits[s].num_examples for s in ("train", "test")} == {
        "train": 10, "test": 10}  # stride 2 over 10 + 9 frames per subject
    examples = _examples(built, "train")
    shapes = {"image": (V, N, N, 3), "mask": (V, N, N), "weight": (V, N, N),
              "intrinsics": (V, 3, 3), "extrinsics": (V, 3, 4), "crop": (V, 2, 3),
              "distortion": (V, 5), "joints_world": (skeleton.NUM_JOINTS, 3)}
    cams = calibration.load_cameras()
    for e in examples:
        for key, shape in shapes.items():
            assert e[key].shape == shape, key
        assert e["image"].dtype == np.uint8 and e["frame"].dtype == np.int32
        assert e["subject"] == "S1" and e["action"] in ("Directions", "Photo")
        for view, camera_id in enumerate(release.CAMERA_IDS):
            cam = cams["S1", camera_id]
            np.testing.assert_allclose(e["extrinsics"][view], cam.extrinsics, rtol=1e-6, atol=1e-3)
            np.testing.assert_allclose(e["distortion"][view], cam.distortion, rtol=1e-6)
            np.testing.assert_allclose(e["intrinsics"][view],
                                       calibration.scaled_intrinsics(cam, 128, 128), rtol=1e-6)
            expected = geodesic.weight_map(e["mask"][view])
            np.testing.assert_allclose(e["weight"][view], expected, rtol=2e-3, atol=2e-2)
        assert 0.05 < e["mask"].mean() < 0.6
        sequence = "Directions 1" if e["action"] == "Directions" else "TakingPhoto"
        poses = release.load_poses(os.path.join(DUMMY_DIR, "S1", "MyPoseFeatures",
                                                "D3_Positions", sequence + ".cdf"))
        np.testing.assert_allclose(e["joints_world"], poses[e["frame"]], rtol=1e-6)
    raw = built.as_data_source("test")[0]
    assert [c.decode() if isinstance(c, bytes) else c for c in raw["meta"]["camera"]] == list(
        release.CAMERA_IDS)
    assert _frames_by_action(_examples(built, "test")) == {
        ("S9", "Photo"): {0, 2, 4, 6, 8}, ("S9", "WalkDog"): {0, 2, 4, 6, 8}}


def test_ground_truth_lands_inside_the_release_masks(built):
    assert _inside_fraction(_examples(built, "train") + _examples(built, "test")) > 0.95


def test_png_masks_give_the_same_examples(built, tmp_path):
    other = _build(tmp_path, mask_source="png_dir", mask_dir=PNG_DIR)
    assert other.builder_config.name != built.builder_config.name
    for split in ("train", "test"):
        for a, b in zip(_examples(built, split), _examples(other, split), strict=True):
            for key in ("mask", "crop", "image", "joints_world"):
                np.testing.assert_array_equal(a[key], b[key])


def test_missing_png_is_bad_input(tmp_path):
    mask_dir = tmp_path / "masks"
    shutil.copytree(PNG_DIR, mask_dir)
    os.remove(release.png_mask_path(str(mask_dir), "S1", "Directions 1", "55011271", 4))
    with pytest.raises(frames.BadInput, match=r"Directions 1.55011271/000004.png: no such"):
        _build(tmp_path / "tfds", mask_source="png_dir", mask_dir=str(mask_dir))


def test_median_background_masks(built, tmp_path):
    median = _build(tmp_path, mask_source="median")
    examples = _examples(median, "train") + _examples(median, "test")
    assert len(examples) == 20
    assert _inside_fraction(examples) > 0.9
    # The mask-box crops agree with the release-mask build's to a few pixels.
    reference = _examples(built, "train") + _examples(built, "test")
    def centre_Vx2(crop_Vx2x3):  # full-image pixel at the crop's centre
        return ((N - 1) / 2 - crop_Vx2x3[:, :, 2]) / crop_Vx2x3[:, [0, 1], [0, 1]]

    for a, b in zip(examples, reference, strict=True):
        assert np.abs(centre_Vx2(a["crop"]) - centre_Vx2(b["crop"])).max() < 6


def test_frames_per_sequence_and_exclude_actions(tmp_path):
    spread = _build(tmp_path / "a", frame_stride=5, frames_per_sequence=3)
    assert _frames_by_action(_examples(spread, "train")) == {
        ("S1", "Directions"): {0, 5, 9}, ("S1", "Photo"): {0, 4, 8}}
    excluded = _build(tmp_path / "b", exclude_actions="Photo,Sitting")
    assert set(_frames_by_action(_examples(excluded, "train"))) == {("S1", "Directions")}
    assert set(_frames_by_action(_examples(excluded, "test"))) == {("S9", "WalkDog")}


def test_frame_indices():
    assert h36m.frame_indices(12, 5, 0) == [0, 5, 10]
    assert h36m.frame_indices(4, 1, 9) == [0, 1, 2, 3]
    assert h36m.frame_indices(7, 5, 1) == [0]
    for total, count in ((10, 3), (1000, 7), (9, 9), (50, 49)):
        got = h36m.frame_indices(total, 5, count)
        ideal = np.arange(count) * (total - 1) / (count - 1)
        assert len(set(got)) == count and got == sorted(got)
        assert np.abs(np.array(got) - ideal).max() <= 0.5


def test_same_options_give_identical_files(built, tmp_path):
    again = testing.build_in_new_process("h36m", str(tmp_path), OPTIONS)
    testing.assert_same_records(built, again)


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory):
    """The dummy release with one fault per sequence (and no S11): `make_dummy_data.BAD`."""
    root = str(tmp_path_factory.mktemp("bad") / "release")
    make_dummy_data.make_bad_release(root)
    return root


@pytest.mark.parametrize("options, message", [
    (dict(train_subjects="", test_subjects="S11"), "S11: no such subject folder"),
    *make_dummy_data.BAD.values(),
])
def test_bad_input_is_an_error_naming_the_file(bad_root, tmp_path, options, message):
    builder = h36m.Builder(config=h36m.make_config(**{**OPTIONS, "root_dir": bad_root, **options}),
                           data_dir=str(tmp_path), file_format="array_record")
    with pytest.raises(frames.BadInput, match=re.escape(message)):
        builder.download_and_prepare()
    # tfds wrote into a temporary folder: nothing looks finished.
    testing.assert_nothing_finished(builder)


def test_skip_mode_counts_and_skips_the_bad_parts(bad_root, tmp_path):
    builder = _build(tmp_path, root_dir=bad_root, on_bad_input="skip", test_subjects="S9,S11")
    assert builder.skipped == {"train": {"sequence": 1, "frame": 3},
                               "test": {"subject": 1, "sequence": 2}}
    assert _frames_by_action(_examples(builder, "train")) == {("S1", "Photo"): {0, 6}}
    assert _frames_by_action(_examples(builder, "test")) == {("S9", "Photo"): {0, 2, 4, 6, 8}}


def test_a_split_with_nothing_left_is_an_error(bad_root, tmp_path):
    builder = h36m.Builder(config=h36m.make_config(
        **{**OPTIONS, "root_dir": bad_root, "on_bad_input": "skip", "train_subjects": "",
           "exclude_actions": "Photo"}), data_dir=str(tmp_path), file_format="array_record")
    with pytest.raises(frames.BadInput, match="h36m test: no example"):
        builder.download_and_prepare()
    assert not builder.is_prepared()


@pytest.mark.parametrize("options, error, message", [
    (dict(root_dir=""), ValueError, "option root_dir is required"),
    (dict(root_dir="/no/such/h36m"), FileNotFoundError, "root_dir: no such folder '/no/such/h36m'"),
    (dict(image_size=4), ValueError, "option image_size"),
    (dict(on_bad_input="ignore"), ValueError, "option on_bad_input"),
    (dict(mask_source="sam"), ValueError, "option mask_source"),
    (dict(mask_source="png_dir"), ValueError, "option mask_dir is required"),
    (dict(mask_source="png_dir", mask_dir="/no/masks"), FileNotFoundError, "option mask_dir"),
    (dict(mask_dir=PNG_DIR), ValueError, "option mask_dir is only read with"),
    (dict(background_frames=0), ValueError, "option background_frames"),
    (dict(train_subjects="S1,S12"), ValueError, "option train_subjects"),
    (dict(test_subjects="S9,S9"), ValueError, "option test_subjects"),
    (dict(test_subjects="S1"), ValueError, "train_subjects and test_subjects share"),
    (dict(train_subjects="", test_subjects=""), ValueError, "both empty"),
    (dict(cameras="54138969,123"), ValueError, "option cameras"),
    (dict(frame_stride=0), ValueError, "option frame_stride"),
    (dict(frames_per_sequence=-1), ValueError, "option frames_per_sequence"),
    (dict(frame_stride=3, frames_per_sequence=4), ValueError,
     "options frame_stride and frames_per_sequence"),
    (dict(exclude_actions="Directions,Dancing"), ValueError,
     r"option exclude_actions: \['Dancing'\]"),
])
def test_option_errors_name_the_option(options, error, message):
    with pytest.raises(error, match=message):
        h36m.make_config(**{**OPTIONS, **options})


def test_config_names_and_registry(tmp_path):
    config = h36m.make_config(**{**OPTIONS, "cameras": " 55011271 , 54138969"})
    assert config.cameras == "55011271,54138969"
    assert config.name == h36m.make_config(**{**OPTIONS, "cameras": "55011271,54138969"}).name
    assert "root_dir-" in config.name and DUMMY_DIR not in config.name
    assert h36m.make_config(**OPTIONS).name != h36m.make_config(
        **{**OPTIONS, "root_dir": PNG_DIR}).name
    with pytest.raises(ValueError, match="colour"):
        data_builders.make_builder("h36m", str(tmp_path), root_dir=DUMMY_DIR, colour=1)
    builder = data_builders.make_builder("h36m", str(tmp_path), **OPTIONS)
    assert builder.builder_config.name == h36m.make_config(**OPTIONS).name


def test_crops_masks_and_weights_do_not_depend_on_joints(built, tmp_path):
    """Joints moved inside an unchanged silhouette (the same videos and masks, every pose moved
    by 20 mm): the same crops, masks, weights and images; only joints_world moves."""
    root = tmp_path / "release"
    shutil.copytree(DUMMY_DIR, root)
    shift = np.array([20.0, -20.0, 10.0])
    for subject in ("S1", "S9"):
        folder = root / subject / "MyPoseFeatures" / "D3_Positions"
        for name in os.listdir(folder):
            pose = np.asarray(cdflib.CDF(str(folder / name)).varget("Pose")).reshape(-1, 32, 3)
            make_dummy_data.write_cdf(str(folder / name), pose + shift)
    moved = _build(tmp_path / "tfds", root_dir=str(root))
    for split in ("train", "test"):
        before, after = _examples(built, split), _examples(moved, split)
        assert len(before) == len(after) > 0
        for a, b in zip(before, after):
            for field in ("crop", "mask", "weight", "image", "intrinsics", "extrinsics"):
                np.testing.assert_array_equal(a[field], b[field], err_msg=field)
            np.testing.assert_allclose(b["joints_world"] - a["joints_world"],
                                       np.broadcast_to(shift, a["joints_world"].shape), atol=1e-3)
