"""`synthetic`: multi-view silhouettes and images rendered from real motion capture (DESIGN §12).

Every clip of `mocap_dir` (CMU BVH, DeepMimic) is resampled to 30 Hz and, for each of
`subjects_per_pose` procedural subjects, retargeted to that subject's bone lengths. Every frame is
turned and moved to a random spot of the capture area, rendered by ray casting in every camera of
the rig (crop around the rendered mask's bounding box, never around joints), and stored with its
geodesic weight maps and ground-truth joints (for evaluation only). Splits are whole clips
(`motion.assign_splits`: by category), and each split is played by its own subjects.

Each example is drawn from its own seed (dataset seed, clip name, subject slot, frame), so the
same options give byte-identical files whatever the order of generation.
"""

import dataclasses
import os
import zlib
from concurrent import futures

import numpy as np
from absl import logging
import tensorflow_datasets as tfds

from data_builders import frames
from data_builders import geodesic
from data_builders import options as options_lib
from data_builders.synthetic import body as body_lib
from data_builders.synthetic import motion as motion_lib
from data_builders.synthetic import raycast
from data_builders.synthetic import rig as rig_lib

ASSETS_MOCAP_DIR = os.path.join(os.path.dirname(__file__), "..", "assets", "mocap")
RIGS = ("h36m", "ring")
# Procedural subjects: subject k is sample_body(seed, 7, k); every split has its own, in this order
# (so adding a split kept the train and test subjects of earlier builds).
SPLIT_SUBJECTS = {"train": range(0, 6), "test": range(6, 8), "val": range(8, 10),
                  "test_unseen": range(10, 12)}
# size=default: about this many examples per split (every frame of size=large is ~32,000 train).
# Train frames are spread evenly over the categories (dance alone is over half of the frames).
DEFAULT_EXAMPLES = {"train": 4000, "val": 400, "test": 800, "test_unseen": 600}
SIZES = ("default", "large")
FPS = 30.0
CAPTURE_AREA_RADIUS_MM = 1000.0
SUPERSAMPLE = 2


@dataclasses.dataclass(eq=False)
class Config(tfds.core.BuilderConfig):
    """Builder options (`python -m data_builders.build synthetic --help-options`)."""

    mocap_dir: str = ""           # folder of BVH / DeepMimic clips; "" = the bundled assets
    seed: int = 0                 # subjects, placements, scenes, noise
    num_views: int = 4            # cameras per example (at most 4 for the h36m rig)
    image_size: int = 64          # crop side, pixels
    subjects_per_pose: int = 1    # procedural subjects rendered per mocap frame
    size: str = "default"         # "default": frames subsampled (DEFAULT_EXAMPLES); "large": all
    mirror: bool = True           # train also on every clip mirrored left/right (labels swapped)
    rig: str = "h36m"             # "h36m": real Human3.6M calibrations; "ring": cameras on a circle
    mask_noise: float = 0.0       # probability that a view's mask is corrupted (holes, ragged edges)
    ring_radius_mm: float = 4500.0   # ring rig: distance of the cameras from the centre
    ring_height_mm: float = 1500.0   # ring rig: camera height
    ring_focal_px: float = 1150.0    # ring rig: focal length
    ring_image_px: int = 1000        # ring rig: full image side


_DEFAULTS = Config(name="default")


options_lib.describe(_DEFAULTS)


def make_config(**options) -> Config:
    """A `Config` for `options`, checked, named after the options that differ from the defaults."""
    config = Config(name="default", **options)
    if config.size not in SIZES:
        raise ValueError(f"option size must be one of {SIZES}, got {config.size!r}")
    if config.rig not in RIGS:
        raise ValueError(f"option rig must be one of {RIGS}, got {config.rig!r}")
    if config.rig == "h36m" and not 1 <= config.num_views <= 4:
        raise ValueError(f"option num_views must be in 1..4 for the h36m rig, got {config.num_views}")
    if config.num_views < 1 or config.image_size < 8 or config.subjects_per_pose < 1:
        raise ValueError("options num_views >= 1, image_size >= 8 and subjects_per_pose >= 1 needed")
    if not 0.0 <= config.mask_noise <= 1.0:
        raise ValueError(f"option mask_noise must be in [0, 1], got {config.mask_noise}")
    mocap_dir = config.mocap_dir or ASSETS_MOCAP_DIR
    if not os.path.isdir(mocap_dir):
        raise FileNotFoundError(f"option mocap_dir: no such folder {mocap_dir!r}")
    return options_lib.named(config, _DEFAULTS, paths=("mocap_dir",))


def _example_seed(seed: int, clip: str, slot: int, frame: int) -> list[int]:
    return [seed, zlib.crc32(clip.encode()), slot, frame]


class Builder(tfds.core.GeneratorBasedBuilder):
    """The synthetic multi-view dataset (`synthetic`)."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": "A val split (own clips and subjects).",
                     "2.0.0": "130 clips; splits by category (test = unseen takes, test_unseen = "
                              "unseen kinds of motion); mirrored train clips; size option; "
                              "action = category."}
    BUILDER_CONFIGS = [_DEFAULTS]

    def _info(self) -> tfds.core.DatasetInfo:
        v, n = self.builder_config.num_views, self.builder_config.image_size
        return self.dataset_info_from_configs(
            description=__doc__.splitlines()[0],
            features=frames.features(v, n),
            homepage="https://mocap.cs.cmu.edu",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        config = self.builder_config
        mocap_dir = config.mocap_dir or ASSETS_MOCAP_DIR
        motions = motion_lib.load_motions(mocap_dir)
        motions = [motion_lib.resample(m, FPS) for m in motions]
        categories = motion_lib.clip_categories(mocap_dir)
        split_of = motion_lib.assign_splits(
            {m.name: len(m.joints_world_TxJx3) for m in motions}, categories)
        subjects = [body_lib.sample_body(np.random.default_rng([config.seed, 7, k]))
                    for k in range(max(r.stop for r in SPLIT_SUBJECTS.values()))]
        by_split = {split: [] for split in SPLIT_SUBJECTS}
        for motion in motions:
            by_split[split_of[motion.name]].append(motion)
        return {split: self._generate_examples(clips, subjects, split, categories)
                for split, clips in by_split.items() if clips}

    def _frame_strides(self, motions, split, categories):
        """{clip name: frame stride}: 1 for size=large; else about DEFAULT_EXAMPLES[split]
        examples, train spread evenly over its categories (mirrored clips counted)."""
        config = self.builder_config
        if config.size == "large":
            return {m.name: 1 for m in motions}
        copies = config.subjects_per_pose * (2 if split == "train" and config.mirror else 1)
        group = {m.name: categories.get(m.name, "misc") if split == "train" else split
                 for m in motions}
        frames = {}
        for m in motions:
            frames[group[m.name]] = frames.get(group[m.name], 0) + len(m.joints_world_TxJx3)
        budget = DEFAULT_EXAMPLES[split] / len(frames)
        return {m.name: max(1, -(-frames[group[m.name]] * copies // int(budget)))
                for m in motions}

    def _generate_examples(self, motions, subjects, split, categories):
        config = self.builder_config
        pool = SPLIT_SUBJECTS[split]
        strides = self._frame_strides(motions, split, categories)
        # Mirrored clips (train only) take the frames half a stride after the originals'.
        clips = [(m, m, 0) for m in motions]
        if split == "train" and config.mirror:
            clips += [(motion_lib.mirror(m), m, 1) for m in motions]
        jobs = []
        for motion, source, mirrored in clips:
            stride = strides[source.name]
            category = categories.get(source.name, "misc")
            first = zlib.crc32(motion.name.encode()) % len(pool)
            for slot in range(config.subjects_per_pose):
                subject = pool[(first + slot) % len(pool)]
                bones_rng = np.random.default_rng([config.seed, 11, subject])
                joints = motion_lib.retarget(
                    motion.joints_world_TxJx3, motion_lib.sample_bone_lengths(bones_rng))
                for frame in range(mirrored * (stride // 2), len(joints), stride):
                    jobs.append((motion.name, category, slot, subject, frame, joints[frame]))
        counts = {"degenerate_masks": 0, "skipped_frames": 0}
        # Rendering (JAX), fast marching and PNG coding release the GIL: two threads use two cores.
        with futures.ThreadPoolExecutor(max_workers=2) as pool_executor:
            for key, example, degenerate in pool_executor.map(
                    lambda job: self._example(job, subjects), jobs):
                if example is None:
                    counts["skipped_frames"] += 1
                    continue
                counts["degenerate_masks"] += degenerate
                yield key, example
        logging.info("synthetic %s: %d degenerate masks (uniform weight), %d frames skipped "
                     "(the person left a view)", split, counts["degenerate_masks"],
                     counts["skipped_frames"])

    def _rig(self, rng):
        config = self.builder_config
        if config.rig == "ring":
            return rig_lib.ring_rig(config.num_views, config.ring_radius_mm,
                                    config.ring_height_mm, config.ring_focal_px,
                                    config.ring_image_px, start_angle=rng.uniform(0, 2 * np.pi))
        return rig_lib.sample_h36m_rig(rng, config.num_views)

    def _example(self, job, subjects):
        """Renders one (clip, subject slot, frame): returns (key, example or None, #degenerate)."""
        clip, category, slot, subject, frame, joints_Jx3 = job
        config = self.builder_config
        key = f"{clip}_{slot}_{frame:05d}"
        rng = np.random.default_rng(_example_seed(config.seed, clip, slot, frame))
        rig = self._rig(rng)
        placed_Jx3, _, _ = rig_lib.place_person(joints_Jx3, rng, CAPTURE_AREA_RADIUS_MM, rig=rig)
        if not rig_lib.in_view(placed_Jx3[None], rig).all():
            return key, None, 0
        body = subjects[subject]
        scene = rig_lib.sample_scene(rng)
        rendered = raycast.render_views(body_lib.capsules(placed_Jx3, body), body, scene, rig,
                                        config.image_size, SUPERSAMPLE, frames.CROP_MARGIN)
        if rendered is None:
            return key, None, 0
        masks, images, crops = rendered
        if config.mask_noise > 0:
            masks = np.stack([raycast.corrupt_mask(m, rng) if rng.uniform() < config.mask_noise
                              else m for m in masks])
        degenerate = sum(geodesic.is_degenerate(m) for m in masks)
        example = {
            "image": [frames.png(image) for image in images],
            "mask": [frames.png(np.rint(m * 255).astype(np.uint8)) for m in masks],
            "weight": np.stack([geodesic.weight_map(m) for m in masks]).astype(np.float16),
            "intrinsics": np.stack([c.intrinsics for c in rig]).astype(np.float32),
            "extrinsics": np.stack([c.extrinsics for c in rig]).astype(np.float32),
            "crop": crops.astype(np.float32),
            "distortion": np.zeros((len(rig), 5), np.float32),
            "joints_world": placed_Jx3.astype(np.float32),
            "meta": {"subject": f"P{subject}", "action": category, "frame": frame,
                     "camera": [f"{c.subject}/{c.camera_id}" for c in rig]},
        }
        return key, example, degenerate
