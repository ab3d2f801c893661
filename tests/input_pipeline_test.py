"""Input pipeline over an in-memory source in the tfds record format."""

import numpy as np
import pytest

from maskpose_jax import input_pipeline

V, N, J = 2, 8, 17


def _record(i):
    rng = np.random.default_rng(i)
    return {
        "image": [rng.integers(0, 256, (N, N, 3), dtype=np.uint8) for _ in range(V)],
        "mask": [rng.integers(0, 256, (N, N, 1), dtype=np.uint8) for _ in range(V)],
        "weight": rng.uniform(1, 20, (V, N, N)).astype(np.float16),
        "intrinsics": np.tile(np.array([[1, 0, i], [0, 1, 0], [0, 0, 1]], np.float32), (V, 1, 1)),
        "extrinsics": rng.normal(size=(V, 3, 4)).astype(np.float32),
        "crop": rng.normal(size=(V, 2, 3)).astype(np.float32),
        "distortion": np.zeros((V, 5), np.float32),
        "joints_world": rng.normal(size=(J, 3)).astype(np.float32),
        "meta": {"subject": b"P1", "action": b"walk", "frame": i, "camera": [b"a", b"b"]},
    }


SOURCE = [_record(i) for i in range(23)]


def _ids(batch):
    """Example ids, stored in the principal point (present in training and evaluation batches)."""
    return batch["intrinsics"][:, 0, 0, 2].astype(int).tolist()


def _train(seed=0, **kwargs):
    kwargs = {"global_batch_size": 4, "training": True, "seed": seed, "num_threads": 2, **kwargs}
    return input_pipeline.make_dataset(SOURCE, **kwargs)


def test_decode_example_fields():
    example = input_pipeline.decode_example(SOURCE[3])
    assert example["image"].shape == (V, N, N, 3) and example["image"].dtype == np.uint8
    assert example["mask"].shape == (V, N, N) and example["mask"].dtype == np.float32
    np.testing.assert_allclose(example["mask"][1], SOURCE[3]["mask"][1][..., 0] / 255.0)
    assert example["weight"].dtype == np.float32
    assert (example["subject"], example["action"], int(example["frame"])) == ("P1", "walk", 3)


def test_training_batches_carry_no_ground_truth():
    batch = next(iter(_train()))
    assert set(batch) == set(input_pipeline.TRAIN_FIELDS)
    assert "joints_world" not in batch and "subject" not in batch
    assert batch["image"].shape == (4, V, N, N, 3)
    assert batch["mask"].shape == (4, V, N, N)
    assert batch["crop"].shape == (4, V, 2, 3)


def test_eval_is_one_ordered_pass_with_truth():
    batches = list(input_pipeline.make_dataset(SOURCE, global_batch_size=5, training=False))
    assert [len(b["frame"]) for b in batches] == [5, 5, 5, 5, 3]
    ids = sum((_ids(b) for b in batches), [])
    assert ids == list(range(23))
    assert set(batches[0]) == set(input_pipeline.EVAL_FIELDS)
    np.testing.assert_array_equal(batches[0]["image"][2], np.stack(SOURCE[2]["image"]))
    np.testing.assert_array_equal(batches[0]["joints_world"][2], SOURCE[2]["joints_world"])


def test_shuffle_is_seeded_and_reshuffles_each_epoch():
    first = [_ids(b) for b, _ in zip(_train(seed=1), range(12))]
    again = [_ids(b) for b, _ in zip(_train(seed=1), range(12))]
    other = [_ids(b) for b, _ in zip(_train(seed=2), range(12))]
    assert first == again and first != other
    flat = sum(first, [])
    assert sorted(flat[:23]) == list(range(23))  # each epoch is a permutation
    assert flat[:23] != flat[23:46]


@pytest.mark.parametrize("process_index", [0, 1])
def test_the_index_is_each_examples_position_in_every_epoch(process_index):
    """The fit cache's key: over several epochs (and in a process's slice) it names the record
    the example was read from, and the order is the one without the index."""
    kwargs = dict(process_index=process_index, process_count=2, global_batch_size=4, seed=3)
    with_index = [b for b, _ in zip(_train(extra_fields=(input_pipeline.INDEX_FIELD,),
                                           **kwargs), range(20))]  # ~7 epochs of 12
    plain = [b for b, _ in zip(_train(**kwargs), range(20))]
    for got, want in zip(with_index, plain):
        assert got["index"].dtype == np.int32
        assert got["index"].tolist() == _ids(got) == _ids(want)
    assert {i % 2 for b in with_index for i in b["index"].tolist()} == {process_index}


def test_processes_read_disjoint_slices():
    seen = []
    for index in range(2):
        ds = input_pipeline.make_dataset(SOURCE, global_batch_size=4, training=False,
                                         process_index=index, process_count=2)
        batches = list(ds)
        assert len(batches[0]["frame"]) == 2
        seen.append(sum((_ids(b) for b in batches), []))
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(23))


def test_resume_from_iterator_state():
    iterator = iter(_train(seed=5))
    for _ in range(7):
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator) for _ in range(4)]
    resumed = iter(_train(seed=5))
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        assert _ids(got) == _ids(want)
        np.testing.assert_array_equal(got["image"], want["image"])  # augmentation too


def test_augmentation_changes_only_the_image():
    example = input_pipeline.decode_example(SOURCE[0])
    out = input_pipeline.photometric_augment(example, np.random.default_rng(0), blur_prob=1.0)
    assert out["image"].shape == example["image"].shape and out["image"].dtype == np.uint8
    assert not np.array_equal(out["image"], example["image"])
    for key in ("mask", "weight", "crop", "intrinsics", "extrinsics"):
        np.testing.assert_array_equal(out[key], example[key])


def test_view_selection():
    batch = next(iter(_train(views=(1,))))
    assert batch["image"].shape == (4, 1, N, N, 3) and batch["crop"].shape == (4, 1, 2, 3)
    full = next(iter(_train()))
    np.testing.assert_array_equal(batch["extrinsics"][:, 0], full["extrinsics"][:, 1])


def test_bad_batch_sizes_are_errors():
    with pytest.raises(ValueError, match="process count"):
        input_pipeline.make_dataset(SOURCE, global_batch_size=5, training=True, process_count=2)
    with pytest.raises(ValueError, match="exceeds"):
        input_pipeline.make_dataset(SOURCE, global_batch_size=64, training=True)
