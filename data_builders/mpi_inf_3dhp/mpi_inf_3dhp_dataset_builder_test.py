"""Builds `mpi_inf_3dhp` over `dummy_data/` (2 training sequences × cameras 0, 2, 8 × 6 frames;
test sequences TS1 with an invalid frame and TS5) and checks the fields, the geometry against
the masks, determinism, every bad input under both policies and the option errors."""

import os
import shutil
from typing import Callable, NamedTuple

import numpy as np
import pytest
import scipy.io

import data_builders
from data_builders import frames
from data_builders import geodesic
from data_builders import preview
from data_builders import testing
from data_builders import video
from data_builders.frames import BadInput
from data_builders.mpi_inf_3dhp import make_dummy_data
from data_builders.mpi_inf_3dhp import mpi_inf_3dhp_dataset_builder as mpi
from data_builders.mpi_inf_3dhp import release
from maskpose_jax import input_pipeline
from maskpose_jax import skeleton

DUMMY_DIR = os.path.join(os.path.dirname(__file__), "dummy_data")
OPTIONS = dict(root_dir=DUMMY_DIR, train_subjects="S1,S2", train_sequences="Seq1",
               cameras="0,2,8", frame_stride=2, image_size=32, test_sequences="TS1,TS5",
               test_cameras=os.path.join(DUMMY_DIR, "test_cameras.pkl"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    builder = data_builders.make_builder("mpi_inf_3dhp", str(tmp_path_factory.mktemp("tfds")),
                                         **OPTIONS)
    builder.download_and_prepare()
    return builder


def _decoded(builder, split):
    return [input_pipeline.decode_example(r) for r in data_builders.data_source(builder, split)]


def test_builder_name():
    assert mpi.Builder.name == "mpi_inf_3dhp"


def test_splits_fields_and_metadata(built):
    train, test = _decoded(built, "train"), _decoded(built, "test")
    assert sorted((e["subject"], int(e["frame"])) for e in train) == [
            (s, f) for s in ("S1", "S2") for f in (0, 2, 4)]
    # TS1's frame 3 is marked invalid in annot_data.mat and stays out.
    assert sorted((e["subject"], int(e["frame"])) for e in test) == [
            ("TS1", f) for f in (0, 1, 2, 4, 5)] + [("TS5", f) for f in range(6)]
    activity = {("TS1", 0): "Stand/Walk", ("TS1", 2): "Exercise", ("TS1", 4): "Sit on Chair",
                ("TS5", 0): "Sports", ("TS5", 5): "Miscellaneous"}
    for e in test:
        assert activity.get((e["subject"], int(e["frame"])), e["action"]) == e["action"]
    assert {e["action"] for e in train} == {"S1/Seq1", "S2/Seq1"}
    for split, examples, views in (("train", train, 3), ("test", test, 1)):
        shapes = {"image": (views, 32, 32, 3), "mask": (views, 32, 32), "weight": (views, 32, 32),
                  "intrinsics": (views, 3, 3), "extrinsics": (views, 3, 4), "crop": (views, 2, 3),
                  "distortion": (views, 5), "joints_world": (skeleton.NUM_JOINTS, 3)}
        for key, shape in shapes.items():
            assert examples[0][key].shape == shape, (split, key)
        for e in examples:
            assert e["mask"].mean() > 0.05
            np.testing.assert_allclose(e["weight"][0], geodesic.weight_map(e["mask"][0]),
                                       rtol=2e-3, atol=2e-2)
    raw = data_builders.data_source(built, "train")[0]["meta"]
    assert [c.decode() for c in raw["camera"]] == [
            f"{raw['subject'].decode()}/Seq1/cam{c}" for c in (0, 2, 8)]
    np.testing.assert_array_equal(test[0]["extrinsics"][0], np.eye(3, 4))


def test_ground_truth_lands_in_the_masks(built):
    """Joints projected through the stored cameras and crops fall inside the stored masks."""
    for split in ("train", "test"):
        inside = []
        for e in _decoded(built, split):
            for view in range(e["image"].shape[0]):
                cols, rows = np.clip(np.rint(preview.joints_in_crop(e, view)).astype(int), 0, 31).T
                inside.append(e["mask"][view][rows, cols] > 0.2)
        assert np.mean(inside) > 0.9, split


def test_cameras_agree_on_the_world_joints(built):
    """Every one of the 14 cameras' annot3 moves to the same world pose, which is what is stored."""
    seq_dir = os.path.join(DUMMY_DIR, "S2", "Seq1")
    calibration = release.load_calibration(os.path.join(seq_dir, "camera.calibration"))
    annotations = release.load_train_annotations(os.path.join(seq_dir, "annot.mat"), range(14))
    stored = {int(e["frame"]): e["joints_world"] for e in _decoded(built, "train")
              if e["subject"] == "S2"}
    for frame, joints_world in stored.items():
        world, spread = release.world_from_views(
                [annotations.joints_cam[c][frame] for c in range(14)],
                [calibration[c].extrinsics for c in range(14)])
        assert spread < 0.1
        np.testing.assert_allclose(joints_world, world, atol=0.01)


def test_same_options_give_identical_files(built, tmp_path):
    again = testing.build_in_new_process("mpi_inf_3dhp", str(tmp_path), OPTIONS)
    testing.assert_same_records(built, again)


def _examples(split, on_bad_input="error", **options):
    """Runs one split's generator directly (no tfds); returns (keys, skip counts)."""
    config = mpi.make_config(**{**OPTIONS, "on_bad_input": on_bad_input, **options})
    skips = frames.Skips(config.on_bad_input, "test")
    generate = mpi.train_examples if split == "train" else mpi.test_examples
    return [key for key, _ in generate(config, skips)], dict(skips.counts)


def test_png_masks_and_median_masks_agree():
    config = mpi.make_config(**{**OPTIONS, "test_sequences": "TS1", "test_mask_source": "png_dir",
                                "mask_dir": os.path.join(DUMMY_DIR, "test_masks")})
    png = dict(mpi.test_examples(config, frames.Skips("error", "test")))
    median = dict(mpi.test_examples(mpi.make_config(**{**OPTIONS, "test_sequences": "TS1"}),
                                    frames.Skips("error", "test")))
    assert sorted(png) == sorted(median)
    for key in png:
        np.testing.assert_allclose(png[key]["crop"], median[key]["crop"], atol=0.1 * 32)


def test_mask_cleanup_drops_the_studio_strip():
    """The FGmasks red channel also marks the top rows (not green screen): kept, they would make
    every crop span the whole frame."""
    config = {**OPTIONS, "train_subjects": "S1"}
    clean = dict(mpi.train_examples(mpi.make_config(**config), frames.Skips("error", "t")))
    raw = dict(mpi.train_examples(mpi.make_config(**config, mask_cleanup="none"),
                                  frames.Skips("error", "t")))
    for key in clean:
        assert (clean[key]["crop"][:, 0, 0] > 2 * raw[key]["crop"][:, 0, 0]).all()


@pytest.fixture()
def copy(tmp_path):
    root = tmp_path / "release"
    shutil.copytree(DUMMY_DIR, root)
    return root


def _rewrite_video(path, edit):
    video.write_video(path, edit(np.stack(list(video.iter_frames(path)))), codec="mjpeg")


def _crop_video(path):
    _rewrite_video(path, lambda f: f[:, :64, :64])


def _blank_frame_2(path):
    _rewrite_video(path, lambda f: np.where(np.arange(len(f))[:, None, None, None] == 2, 0, f))


def _add_two_annotation_rows(path):
    raw = scipy.io.loadmat(path)
    for key in ("annot2", "annot3", "univ_annot3"):
        for index in np.ndindex(raw[key].shape):
            cell = raw[key][index]
            raw[key][index] = np.concatenate([cell, cell[-2:]])
    raw["frames"] = np.arange(len(raw["frames"]) + 2)[:, None]
    scipy.io.savemat(path, {k: v for k, v in raw.items() if not k.startswith("__")})


def _scramble(path):
    with open(path, "r+b") as f:
        f.seek(6000)
        f.write(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])


class Case(NamedTuple):
    split: str
    breaks: Callable | None   # applied to `file` of the copied release
    file: str
    fault: str                # regex the error must match
    options: dict
    kept: int                 # examples the "skip" policy still yields
    kind: str                 # what the skip is counted as


TS = release.TEST_SET_DIR
BAD_CASES = {
        "missing_subject": Case("train", None, "", "S3: no such subject folder",
                                dict(train_subjects="S1,S3"), 3, "subjects"),
        "missing_calibration": Case("train", os.remove, "S1/Seq1/camera.calibration",
                                    "camera.calibration: no such calibration file", {}, 3,
                                    "sequences"),
        "missing_camera_video": Case("train", None, "", "video_4.avi: no such video file",
                                     dict(cameras="0,4"), 0, "sequences"),
        "truncated_video": Case("train", _truncate, "S1/Seq1/imageSequence/video_2.avi",
                                "video_2.avi: the video has [0-5] frames, .* annotates 6", {}, 4,
                                "frame-count mismatches"),
        "corrupt_video": Case("train", _scramble, "S1/Seq1/imageSequence/video_2.avi",
                              "video_2.avi: decoding failed", {}, 3, "corrupt videos"),
        "frame_count_mismatch": Case("train", _add_two_annotation_rows, "S2/Seq1/annot.mat",
                                     r"video_0.avi: the video has 6 frames, .*annot.mat "
                                     r"annotates 8 \(1 sampled frames", {}, 6,
                                     "frame-count mismatches"),
        "wrong_size_mask": Case("train", _crop_video, "S2/Seq1/FGmasks/video_8.avi",
                                "video_8.avi frame 0: mask is 64×64 pixels, the frame 96×96",
                                {}, 3, "frames"),
        "empty_mask": Case("train", _blank_frame_2, "S2/Seq1/FGmasks/video_0.avi",
                           "video_0.avi frame 2: the mask is empty", {}, 5, "frames"),
        "missing_test_image": Case("test", os.remove, f"{TS}/TS5/imageSequence/img_000003.jpg",
                                   "TS5/imageSequence: 5 images, .* annotates 6 frames", {}, 5,
                                   "sequences"),
        "corrupt_test_image": Case("test", _truncate, f"{TS}/TS1/imageSequence/img_000002.jpg",
                                   "img_000002.jpg: cannot be decoded",
                                   dict(test_mask_source="png_dir"), 10, "frames"),
        "missing_test_annotations": Case("test", os.remove, f"{TS}/TS1/annot_data.mat",
                                         "TS1/annot_data.mat: no such annotation file", {}, 6,
                                         "sequences"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_an_error_or_a_counted_skip(copy, case):
    case = BAD_CASES[case]
    if case.breaks is not None:
        case.breaks(copy / case.file)
    options = {"root_dir": str(copy), **case.options}
    if options.get("test_mask_source") == "png_dir":
        options["mask_dir"] = str(copy / "test_masks")
    with pytest.raises(BadInput, match=case.fault):
        _examples(case.split, **options)
    keys, counts = _examples(case.split, "skip", **options)
    assert len(keys) == case.kept
    assert counts == {case.kind: counts.get(case.kind, 0)} and counts[case.kind] >= 1


def test_failed_build_leaves_nothing_finished(copy, tmp_path):
    os.remove(copy / "S2" / "Seq1" / "annot.mat")
    data_dir = tmp_path / "tfds"
    builder = data_builders.make_builder("mpi_inf_3dhp", str(data_dir),
                                         **{**OPTIONS, "root_dir": str(copy)})
    with pytest.raises(BadInput, match="annot.mat: no such annotation file"):
        builder.download_and_prepare()
    testing.assert_nothing_finished(builder)


def test_dummy_data_script_reproduces_the_committed_folder(tmp_path):
    out = tmp_path / "dummy"
    assert make_dummy_data.main(["--out", str(out)]) == 0
    testing.assert_same_tree(out, DUMMY_DIR)


def test_option_errors_name_the_option(tmp_path):
    def config(**options):
        return mpi.make_config(**{**OPTIONS, **options})

    with pytest.raises(ValueError, match="root_dir is required"):
        mpi.make_config()
    with pytest.raises(FileNotFoundError, match="root_dir: no such folder"):
        config(root_dir=str(tmp_path / "nowhere"))
    for option, value in [("on_bad_input", "ignore"), ("image_size", 4), ("cameras", "0,14"),
                          ("cameras", "a"), ("cameras", "2,2"), ("frame_stride", 0),
                          ("test_frame_stride", 0), ("median_frames", 0), ("fg_channel", "alpha"),
                          ("fg_threshold", 255), ("mask_cleanup", "all"),
                          ("test_mask_source", "sam"), ("train_subjects", "S9"),
                          ("train_sequences", "Seq3"), ("test_sequences", "TS7")]:
        with pytest.raises(ValueError, match=f"option {option}"):
            config(**{option: value})
    with pytest.raises(ValueError, match="mask_dir"):
        config(test_mask_source="png_dir")
    with pytest.raises(ValueError, match="mask_dir"):
        config(mask_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="test_cameras"):
        config(test_cameras=str(tmp_path / "none.pkl"))
    with pytest.raises(ValueError, match="both empty"):
        config(train_subjects="", test_sequences="")
    with pytest.raises(ValueError, match="unknown option"):
        data_builders.make_builder("mpi_inf_3dhp", str(tmp_path), colour=1, **OPTIONS)
    with pytest.raises(ValueError, match="frame_stride"):
        data_builders.parse_option("mpi_inf_3dhp", "frame_stride", "often")
    assert config().name == config().name != config(frame_stride=3).name
    assert "default" == mpi.Builder.BUILDER_CONFIGS[0].name
