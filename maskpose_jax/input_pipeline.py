"""Input pipeline: grain over a tfds array_record data source, to NumPy batches `[B, V, ...]`.

Examples come in the format of DESIGN §1 (see `data_builders/README.md`). Training batches carry
only what the losses may read: no ground-truth joints and no metadata, so that no training path
can see the truth; evaluation batches add `joints_world` and the metadata.

Each process reads its own slice of the data (`process_index::process_count`), shuffles it with
the config's seed and batches `global_batch_size / process_count` examples, so the global batch
is the concatenation over processes in process order. The iterator's state (`get_state()` /
`set_state()`) is saved with the training checkpoint, so a resumed run sees the same data order.

Mixed training sources (`make_mixture`): every batch holds a fixed number of examples of each
source (`mix_counts`: the weights' shares of the per-process batch, rounded to integers),
each source shuffled with its own seed. Sources with fewer views are padded to the most views of
any source, and a mixture's batches always carry `view_valid` B×V (1 real view, 0 padding), which
the losses read; a lone source reads exactly as `make_dataset`.
"""

import functools
from typing import Any, Mapping, NamedTuple, Sequence

import grain
import numpy as np
from scipy import ndimage

# What the training step sees.
TRAIN_FIELDS = ("image", "mask", "weight", "outside_distance", "intrinsics", "extrinsics", "crop",
                "distortion")
# The position of an example in its split, on request (`extra_fields`): the key of the
# network-in-the-loop fit's cache. An identifier, not a label.
INDEX_FIELD = "index"
# What the evaluation step sees in addition.
EVAL_FIELDS = TRAIN_FIELDS + ("joints_world", "subject", "action", "frame")
_PER_VIEW = frozenset(TRAIN_FIELDS)


def without_ground_truth(batch: Mapping[str, Any], extra_fields: Sequence[str] = ()) -> dict:
    """The fields of `batch` that training may read: `TRAIN_FIELDS`, `extra_fields` (the fit
    cache's index; the supervised oracle's `joints_world`, by name) and `view_valid`, those the
    batch holds. Every path that trains or fits from masks reads its batch through this."""
    return {k: batch[k] for k in (*TRAIN_FIELDS, *extra_fields, "view_valid") if k in batch}


def outside_distance(mask_HxW: np.ndarray) -> np.ndarray:
    """Distance from every pixel to the nearest foreground pixel (mask >= 0.5), 0 inside.

    In normalized crop units (2 / (N - 1) per pixel, the Skeleton Mask's units). An empty mask
    gives zeros: no pull anywhere. Computed when an example is read (exact Euclidean transform,
    about 0.1 ms at 64^2), so every built dataset has it without a rebuild.

    Args:
        mask_HxW: foreground mask in [0, 1], square.

    Returns:
        float32 HxW distances.
    """
    background_HxW = mask_HxW < 0.5
    if background_HxW.all():
        return np.zeros(mask_HxW.shape, np.float32)
    pixel = 2.0 / (mask_HxW.shape[0] - 1)
    return (ndimage.distance_transform_edt(background_HxW) * pixel).astype(np.float32)


def decode_example(raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Turns one record as the tfds data source returns it into arrays of DESIGN §1.

    Args:
        raw: a decoded tfds record: `image` and `mask` as lists of V PNG-decoded arrays, the rest as
            arrays, `meta` as a dict.

    Returns:
        image V×H×W×3 uint8, mask V×H×W float32 in [0,1], weight V×H×W float32,
        outside_distance V×H×W float32 (`outside_distance` of each mask), intrinsics V×3×3,
        extrinsics V×3×4 (mm), crop V×2×3, distortion V×5 (float32), joints_world J×3 float32 (mm),
        subject/action (str), frame (int32).
    """
    meta = raw["meta"]
    mask_VxHxW = np.stack(raw["mask"])[..., 0].astype(np.float32) / 255.0
    return {
            "image": np.stack(raw["image"]).astype(np.uint8),
            "mask": mask_VxHxW,
            "weight": np.asarray(raw["weight"], np.float32),
            "outside_distance": np.stack([outside_distance(m) for m in mask_VxHxW]),
            "intrinsics": np.asarray(raw["intrinsics"], np.float32),
            "extrinsics": np.asarray(raw["extrinsics"], np.float32),
            "crop": np.asarray(raw["crop"], np.float32),
            "distortion": np.asarray(raw["distortion"], np.float32),
            "joints_world": np.asarray(raw["joints_world"], np.float32),
            "subject": text(meta["subject"]),
            "action": text(meta["action"]),
            "frame": np.int32(meta["frame"]),
    }


def text(value) -> str:
    """A string field of a record or batch as `str` (records hold bytes)."""
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


def _examples(
        source: Sequence[Any], *, batch_size: int, training: bool, seed: int, process_index: int,
        process_count: int, augment: bool, views: Sequence[int], fields: Sequence[str],
        label: str = "data source",
) -> grain.MapDataset:
    """Per-example pipeline of one source: slice, shuffle and repeat (training), decode, augment."""
    if len(source) < process_count:
        raise ValueError(
            f"{label} has {len(source)} examples, fewer than {process_count} processes")
    with_index = INDEX_FIELD in fields
    # With the index, the pipeline walks over positions and reads each record by its position
    # (grain's map_with_index numbers the elements of the repeated dataset, epochs on end).
    ds = grain.MapDataset.range(len(source)) if with_index else grain.MapDataset.source(source)
    ds = ds[process_index::process_count]
    if training:
        if len(ds) < batch_size:
            raise ValueError(
                f"per-process batch size {batch_size} exceeds the {len(ds)} examples of this "
                f"process ({label})")
        ds = ds.shuffle(seed=seed).repeat()
    if with_index:
        ds = ds.map(lambda index: {**decode_example(source[int(index)]),
                                   INDEX_FIELD: np.int32(index)})
    else:
        ds = ds.map(decode_example)
    if training and augment:
        ds = ds.random_map(photometric_augment, seed=seed + 1)
    return ds.map(_select(fields, views))


def _check_processes(global_batch_size: int, process_index: int, process_count: int) -> int:
    """The per-process batch size."""
    if global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} does not divide by process count {process_count}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} outside [0, {process_count})")
    return global_batch_size // process_count


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
            asks for `joints_world` here; the unsupervised configurations never do. `index`
            (INDEX_FIELD) adds each example's position in `source` (int32).

    Returns:
        A `grain.IterDataset` of dict batches with leading axis `global_batch_size / process_count`.
    """
    batch_size = _check_processes(global_batch_size, process_index, process_count)
    fields = TRAIN_FIELDS + tuple(extra_fields) if training else EVAL_FIELDS
    ds = _examples(source, batch_size=batch_size, training=training, seed=seed,
                   process_index=process_index, process_count=process_count, augment=augment,
                   views=views, fields=fields)
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
    return ds.batch(batch_size, drop_remainder=training)


# --- Mixed training sources ------------------------------------------------------------------


class MixSource(NamedTuple):
    """One training source of a mixture.

    records: random-access records in the tfds format (not read when `weight` is 0).
    weight: share of every batch (relative to the other sources' weights; 0 = unused).
    views: indices of the views to keep (all when empty).
    label: how errors name the source, e.g. the config key "config.data.mix[0]".
    """
    records: Sequence[Any]
    weight: float
    views: Sequence[int] = ()
    label: str = "data source"


def mix_counts(weights: Sequence[float], batch_size: int) -> tuple[int, ...]:
    """Examples of each source in a batch: the integers closest to the weights' shares.

    The counts minimize sum_i (c_i - q_i)^2 for the quotas q_i = w_i / sum(w) * batch_size, with
    sum c_i = batch_size and c_i >= 1 for every source of weight > 0: largest-remainder rounding
    when every quota is at least 1. Computed greedily (optimal for this separable convex
    problem): one example to each source of weight > 0, then each further example to the source
    furthest below its quota (ties: the earlier source).

    Args:
        weights: one weight >= 0 per source, at least one > 0.
        batch_size: examples per (per-process) batch.

    Returns:
        Counts per source, summing to `batch_size`; 0 exactly for the sources of weight 0.

    Raises:
        ValueError: a negative or non-finite weight, no positive weight, or fewer examples per
            batch than sources with weight > 0 (naming the config keys).
    """
    w = np.asarray(weights, np.float64)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError(f"source weights must be finite, >= 0 and not all 0 (config.data.weight, "
                         f"config.data.mix[i].weight); got {list(weights)}")
    counts = (w > 0).astype(np.int64)
    if batch_size < counts.sum():
        raise ValueError(
            f"a per-process batch of {batch_size} examples cannot hold one example of each of the "
            f"{counts.sum()} sources with weight > 0: raise config.train.batch_size to at least "
            f"{counts.sum()} x the process count")
    quota = w / w.sum() * batch_size
    for _ in range(batch_size - int(counts.sum())):
        counts[np.argmax(quota - counts)] += 1
    return tuple(int(c) for c in counts)


def pad_views(example: dict[str, np.ndarray], num_views: int) -> dict[str, np.ndarray]:
    """Pads the per-view fields of one example to `num_views` views and adds `view_valid`.

    Padded views hold harmless data that the losses never read (they mask them with
    `view_valid`): zero image, mask, weight and outside distance; a pinhole camera with focal N and the principal
    point at the centre (N = crop side), extrinsics [I|(0, 0, 1000 mm)], the identity crop, no
    distortion.

    Args:
        example: one decoded example with V <= num_views views in its per-view fields.
        num_views: views after padding.

    Returns:
        The example with per-view fields of num_views views and `view_valid` (num_views,) float32.
    """
    count = example["image"].shape[0]
    if count > num_views:
        raise ValueError(f"example has {count} views, more than the {num_views} of the mixture")
    extra, size = num_views - count, example["image"].shape[1]
    centre = (size - 1) / 2.0
    fill = {
            "intrinsics": np.array([[size, 0, centre], [0, size, centre], [0, 0, 1]], np.float32),
            "extrinsics": np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1000]], np.float32),
            "crop": np.array([[1, 0, 0], [0, 1, 0]], np.float32),
    }
    out = dict(example)
    for key in _PER_VIEW & set(example):
        value = example[key]
        pad = np.broadcast_to(fill[key], (extra,) + value.shape[1:]) if key in fill else (
            np.zeros((extra,) + value.shape[1:], value.dtype))
        out[key] = np.concatenate([value, pad.astype(value.dtype)])
    out["view_valid"] = np.concatenate([np.ones(count), np.zeros(extra)]).astype(np.float32)
    return out


def _concatenate(batches: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def make_mixture(
        sources: Sequence[MixSource], *, global_batch_size: int, seed: int = 0,
        process_index: int = 0, process_count: int = 1, augment: bool = True,
        num_threads: int = 4, prefetch: int = 8, extra_fields: Sequence[str] = (),
) -> grain.IterDataset:
    """Training pipeline over several sources, a fixed number of examples of each in every batch.

    Per process, source i contributes `mix_counts(weights, global_batch_size / process_count)[i]`
    examples to every batch, read from its own `process_index::process_count` slice, shuffled
    with seed `seed + i` (reshuffled every epoch) and augmented as in `make_dataset`. The
    sub-batches are concatenated in source order. With two or more sources of weight > 0, every
    per-view field is padded to V = the most views of any source (`pad_views`) and batches carry
    `view_valid` B×V float32; a single source of weight > 0 gives exactly `make_dataset`'s
    batches. Read threads and prefetch are shared out in proportion to the counts.

    Args:
        sources: the training sources; the first is usually the configured primary dataset.
        global_batch_size: examples per step over all processes; must divide by `process_count`.
        seed: base seed (source i uses seed + i for shuffling, seed + i + 1 for augmentation).
        process_index, process_count: this process's slices (multi-host).
        augment: photometric augmentation.
        num_threads, prefetch: grain read threads and prefetch buffer (elements), in total.
        extra_fields: fields added to every batch (the supervised oracle's `joints_world`).

    Returns:
        A `grain.IterDataset` of dict batches with leading axis `global_batch_size / process_count`
        (`TRAIN_FIELDS` + `extra_fields` + `view_valid`); its iterator has get_state/set_state.
    """
    batch_size = _check_processes(global_batch_size, process_index, process_count)
    counts = mix_counts([s.weight for s in sources], batch_size)
    active = [i for i, c in enumerate(counts) if c]
    fields = TRAIN_FIELDS + tuple(extra_fields)
    if len(active) == 1:
        only = sources[active[0]]
        ds = _examples(only.records, batch_size=batch_size, training=True, seed=seed + active[0],
                       process_index=process_index, process_count=process_count, augment=augment,
                       views=only.views, fields=fields, label=only.label)
        ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                  prefetch_buffer_size=prefetch))
        return ds.batch(batch_size, drop_remainder=True)
    shapes = {}
    for i in active:
        if len(sources[i].records) == 0:
            raise ValueError(f"{sources[i].label} has no examples")
        image = decode_example(sources[i].records[0])["image"]
        shapes[i] = (len(sources[i].views) or image.shape[0], image.shape[1:])
    if len({shape for _, shape in shapes.values()}) > 1:
        raise ValueError("the sources of a mixture need one crop size; got " + ", ".join(
            f"{sources[i].label}: {shapes[i][1][0]}x{shapes[i][1][1]}" for i in active))
    num_views = max(v for v, _ in shapes.values())
    parents = []
    for i in active:
        ds = _examples(sources[i].records, batch_size=counts[i], training=True, seed=seed + i,
                       process_index=process_index, process_count=process_count, augment=augment,
                       views=sources[i].views, fields=fields, label=sources[i].label)
        ds = ds.map(functools.partial(pad_views, num_views=num_views))
        share = counts[i] / batch_size
        options = grain.ReadOptions(num_threads=max(1, round(num_threads * share)),
                                    prefetch_buffer_size=max(counts[i], round(prefetch * share)))
        parents.append(ds.to_iter_dataset(options).batch(counts[i], drop_remainder=True))
    return grain.experimental.ZipIterDataset(parents).map(_concatenate)
