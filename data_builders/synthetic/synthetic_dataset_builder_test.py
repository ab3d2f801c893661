"""Builds `synthetic` over `dummy_data/` (a 48-frame CMU BVH train clip and a 10-frame DeepMimic
`walk` test clip) and checks every field, determinism, the crop geometry and the option errors."""

import os

import numpy as np
import pytest

import data_builders
from data_builders import build
from data_builders import geodesic
from data_builders import preview
from data_builders import testing
from data_builders.synthetic import synthetic_dataset_builder as synthetic
from maskpose_jax import input_pipeline
from maskpose_jax import skeleton

DUMMY_DIR = os.path.join(os.path.dirname(__file__), "dummy_data")
OPTIONS = dict(mocap_dir=DUMMY_DIR, image_size=32, num_views=3, subjects_per_pose=1, seed=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builder = data_builders.make_builder("synthetic", data_dir, **OPTIONS)
    builder.download_and_prepare()
    return builder


def test_splits_are_whole_clips(built):
    # Both dummy clips are walks: the larger trains, the other is the test take. Train also has
    # every frame mirrored: 48 frames at 120 Hz -> 12 at 30 Hz, twice.
    assert built.info.splits["train"].num_examples == 24
    assert built.info.splits["test"].num_examples == 10
    examples = {split: [input_pipeline.decode_example(r)
                        for r in data_builders.data_source(built, split)]
                for split in ("train", "test")}
    assert {e["action"] for e in examples["train"] + examples["test"]} == {"walk"}
    subjects = {split: {e["subject"] for e in v} for split, v in examples.items()}
    assert subjects["train"] <= {f"P{k}" for k in synthetic.SPLIT_SUBJECTS["train"]}
    assert subjects["test"] <= {f"P{k}" for k in synthetic.SPLIT_SUBJECTS["test"]}
    # Each frame and its mirror image are both there, with mirrored poses.
    frames = sorted(int(e["frame"]) for e in examples["train"])
    assert frames == sorted(list(range(12)) * 2)


def test_fields_round_trip(built):
    source = data_builders.data_source(built, "train")
    example = input_pipeline.decode_example(source[0])
    v, n = OPTIONS["num_views"], OPTIONS["image_size"]
    shapes = {"image": (v, n, n, 3), "mask": (v, n, n), "weight": (v, n, n),
              "intrinsics": (v, 3, 3), "extrinsics": (v, 3, 4), "crop": (v, 2, 3),
              "distortion": (v, 5), "joints_world": (skeleton.NUM_JOINTS, 3)}
    for key, shape in shapes.items():
        assert example[key].shape == shape, key
    assert example["image"].dtype == np.uint8
    assert 0.0 <= example["mask"].min() and example["mask"].max() <= 1.0
    assert example["mask"].mean() > 0.05  # a person fills a good part of the crop
    # Stored weights are the weight maps of the stored masks (float16 storage).
    for view in range(v):
        expected = geodesic.weight_map(example["mask"][view])
        np.testing.assert_allclose(example["weight"][view], expected, rtol=2e-3, atol=2e-2)
    rot = example["extrinsics"][:, :, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape),
                               atol=1e-5)
    assert example["subject"].startswith("P") and isinstance(example["frame"], np.int32)


def test_ground_truth_lands_on_the_rendered_body(built):
    """Joints projected through camera + stored crop affine fall inside the rendered mask."""
    source = data_builders.data_source(built, "test")
    inside = []
    for record in source:
        example = input_pipeline.decode_example(record)
        for view in range(OPTIONS["num_views"]):
            uv_Jx2 = preview.joints_in_crop(example, view)
            n = OPTIONS["image_size"]
            assert np.all((uv_Jx2 > -1) & (uv_Jx2 < n)), "a joint left the mask-box crop"
            cols, rows = np.clip(np.rint(uv_Jx2).astype(int), 0, n - 1).T
            inside.append(example["mask"][view][rows, cols] > 0.2)
    assert np.mean(inside) > 0.97


def test_same_options_give_identical_files(built, tmp_path):
    again = testing.build_in_new_process("synthetic", str(tmp_path), OPTIONS)
    testing.assert_same_records(built, again)


def test_other_seed_gives_other_data(built, tmp_path):
    other = data_builders.make_builder("synthetic", str(tmp_path), **{**OPTIONS, "seed": 4})
    assert other.builder_config.name != built.builder_config.name
    other.download_and_prepare()
    a = input_pipeline.decode_example(data_builders.data_source(built, "test")[0])
    b = input_pipeline.decode_example(data_builders.data_source(other, "test")[0])
    assert not np.array_equal(a["image"], b["image"])


def test_option_errors_name_the_option(tmp_path):
    with pytest.raises(ValueError, match="colour"):
        data_builders.make_builder("synthetic", str(tmp_path), colour=1)
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        data_builders.make_builder("synthetic", str(tmp_path), mocap_dir=str(tmp_path / "no_such_folder"))
    with pytest.raises(ValueError, match="num_views"):
        data_builders.make_builder("synthetic", str(tmp_path), num_views=5)
    with pytest.raises(ValueError, match="image_size"):
        data_builders.parse_option("synthetic", "image_size", "big")
    with pytest.raises(ValueError, match="no builder for dataset"):
        data_builders.make_builder("nope", str(tmp_path))
    assert synthetic.make_config() is synthetic.Builder.BUILDER_CONFIGS[0]


def test_data_source_of_unbuilt_dataset_says_how_to_build(tmp_path):
    builder = data_builders.make_builder("synthetic", str(tmp_path), **OPTIONS)
    with pytest.raises(FileNotFoundError, match="python -m data_builders.build synthetic"):
        data_builders.data_source(builder, "train")


def test_build_cli(tmp_path, capsys):
    args = ["synthetic", f"--data_dir={tmp_path}", f"--mocap_dir={DUMMY_DIR}", "--image_size", "16",
            "--num_views=1", "--subjects_per_pose=1"]
    assert build.main(args) == 0
    assert "test: 10 examples" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        build.main(["synthetic", f"--data_dir={tmp_path}", "--no_such_option=1"])
    assert "no_such_option" in capsys.readouterr().err


def test_preview_cli(built, tmp_path):
    out = tmp_path / "preview.png"
    options = [f"--{k}={v}" for k, v in OPTIONS.items()]
    assert preview.main(["synthetic", "--split", "test", "--count", "3", "--out", str(out),
                         f"--data_dir={built.data_dir_root}", *options]) == 0
    assert out.stat().st_size > 10_000
