"""Input pipeline: grain over a tfds array_record data source, to NumPy batches `[B, V, ...]`.

Examples come in the format of DESIGN §1 (see `data_builders/README.md`). Training batches carry
only what the losses may read: no ground-truth joints and no metadata, so that no training path
can see the truth; evaluation batches add `joints_world` and the metadata.

Each process reads its own slice of the data (`process_index::process_count`), shuffles it with
the config's seed and batches `global_batch_size / process_count` examples, so the global batch
is the concatenation over processes in process order. The iterator's state (`get_state()` /
`set_state()`) is saved with the training checkpoint, so a resumed run sees the same data order.
"""

from typing import Any, Mapping, Sequence

import grain
import numpy as np
from scipy import ndimage

# What the training step sees.
TRAIN_FIELDS = ("image", "mask", "weight", "intrinsics", "extrinsics", "crop", "distortion")
# What the evaluation step sees in addition.
EVAL_FIELDS = TRAIN_FIELDS + ("joints_world", "subject", "action", "frame")
_PER_VIEW = frozenset(TRAIN_FIELDS)


def decode_example(raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Turns one record as the tfds data source returns it into arrays of DESIGN §1.

    Args:
        raw: a decoded tfds record: `image` and `mask` as lists of V PNG-decoded arrays, the rest as
            arrays, `meta` as a dict.

    Returns:
        image V×H×W×3 uint8, mask V×H×W float32 in [0,1], weight V×H×W float32, intrinsics V×3×3,
        extrinsics V×3×4 (mm), crop V×2×3, distortion V×5 (float32), joints_world J×3 float32 (mm),
        subject/action (str), frame (int32).
    """
    meta = raw["meta"]
    return {
            "image": np.stack(raw["image"]).astype(np.uint8),
            "mask": np.stack(raw["mask"])[..., 0].astype(np.float32) / 255.0,
            "weight": np.asarray(raw["weight"], np.float32),
            "intrinsics": np.asarray(raw["intrinsics"], np.float32),
            "extrinsics": np.asarray(raw["extrinsics"], np.float32),
            "crop": np.asarray(raw["crop"], np.float32),
            "distortion": np.asarray(raw["distortion"], np.float32),
            "joints_world": np.asarray(raw["joints_world"], np.float32),
            "subject": _text(meta["subject"]),
            "action": _text(meta["action"]),
            "frame": np.int32(meta["frame"]),
    }


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def photometric_augment(
        example: dict[str, np.ndarray], rng: np.random.Generator, *,
        brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3,
        blur_prob: float = 0.3, max_blur_sigma: float = 1.2,
) -> dict[str, np.ndarray]:
    """Colour jitter and blur per view; geometry (and so the crop and cameras) is left unchanged.

    Args:
        example: a decoded example; only `image` (V×H×W×3 uint8) is changed.
        rng: NumPy generator (grain derives one per element from the pipeline seed).
        brightness, contrast, saturation: maximum relative change (factor in [1-x, 1+x]).
        blur_prob: probability that a view is blurred, with sigma uniform in (0.3, max_blur_sigma) px.

    Returns:
        The example with a new `image`.
    """
    views = []
    for image in example["image"].astype(np.float32):
        image = image * rng.uniform(1 - brightness, 1 + brightness)
        mean = image.mean()
        image = (image - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
        gray = image.mean(axis=-1, keepdims=True)
        image = (image - gray) * rng.uniform(1 - saturation, 1 + saturation) + gray
        if rng.uniform() < blur_prob:
            sigma = rng.uniform(0.3, max_blur_sigma)
            image = ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0))
        views.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return {**example, "image": np.stack(views)}


def _select(fields: Sequence[str], views: Sequence[int]):
    """Keeps `fields`, and of the per-view fields only `views` (all when empty)."""
    index = np.asarray(views, np.int64) if views else slice(None)

    def select(example):
        return {k: example[k][index] if k in _PER_VIEW else example[k] for k in fields}
    return select


def make_dataset(
        source: Sequence[Any], *, global_batch_size: int, training: bool, seed: int = 0,
        process_index: int = 0, process_count: int = 1, augment: bool = True,
        num_threads: int = 4, prefetch: int = 8, views: Sequence[int] = (),
        extra_fields: Sequence[str] = (),
) -> grain.IterDataset:
    """Builds the grain pipeline over a random-access source (e.g. `builder.as_data_source(split)`).

    Args:
        source: random-access records in the tfds format (`len` and `__getitem__`).
        global_batch_size: examples per step over all processes; must divide by `process_count`.
        training: shuffle (reshuffled every epoch), repeat forever, augment, drop the last partial
            batch and keep only `TRAIN_FIELDS`; otherwise one ordered pass with `EVAL_FIELDS` and a
            final partial batch.
        seed: shuffle and augmentation seed.
        process_index, process_count: this process's slice of the data (multi-host).
        augment: photometric augmentation (training only).
        num_threads, prefetch: grain read threads and prefetch buffer (elements).
        views: indices of the views to keep (all when empty).
        extra_fields: fields added to a training batch. Only the supervised `oracle` reference
            asks for `joints_world` here; the unsupervised configurations never do.

    Returns:
        A `grain.IterDataset` of dict batches with leading axis `global_batch_size / process_count`.
    """
    if global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} does not divide by process count {process_count}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside [0, {process_count})")
    if len(source) < process_count:
        raise ValueError(f"data source has {len(source)} examples, fewer than {process_count} processes")
    batch_size = global_batch_size // process_count
    ds = grain.MapDataset.source(source)[process_index::process_count]
    if training:
        if len(ds) < batch_size:
            raise ValueError(
                f"per-process batch size {batch_size} exceeds the {len(ds)} examples of this process")
        ds = ds.shuffle(seed=seed).repeat()
    ds = ds.map(decode_example)
    if training and augment:
        ds = ds.random_map(photometric_augment, seed=seed + 1)
    fields = TRAIN_FIELDS + tuple(extra_fields) if training else EVAL_FIELDS
    ds = ds.map(_select(fields, views))
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
    return ds.batch(batch_size, drop_remainder=training)

