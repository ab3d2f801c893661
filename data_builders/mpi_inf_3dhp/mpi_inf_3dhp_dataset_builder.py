"""`mpi_inf_3dhp`: MPI-INF-3DHP (Mehta et al., 3DV 2017), multi-view train and single-view test.

train: the chosen `cameras` of every `train_subjects` × `train_sequences` at the same frame
(every `frame_stride`-th), masks from the release's `FGmasks` videos. The V image and V mask
videos are decoded in lockstep and only the sampled frames' crops are kept, so a 2048² sequence
never sits in memory. test: TS1–TS6, one view, the frames the release marks valid, masks by
median background subtraction (`test_mask_source=median`) or from PNGs beside the images
(`png_dir`). Crops come from the mask's bounding box; ground-truth joints go only into
`joints_world` (the release's world frame, Y up, for train; the camera frame for test).
"""

import dataclasses
import os
import re
from concurrent import futures

import numpy as np
import tensorflow_datasets as tfds

from data_builders import background as background_lib
from data_builders import frames
from data_builders import options as options_lib
from data_builders import video
from data_builders.frames import BadInput
from data_builders.mpi_inf_3dhp import release

DATASET = "mpi_inf_3dhp"
SUBJECTS = tuple(f"S{i}" for i in range(1, 9))
SEQUENCES = ("Seq1", "Seq2")
TEST_SEQUENCES = tuple(f"TS{i}" for i in range(1, 7))
TEST_MASK_SOURCES = ("median", "png_dir")
PATH_OPTIONS = ("root_dir", "mask_dir", "test_cameras")
# Largest distance (mm) tolerated between one frame's joints as moved to the world from each view.
WORLD_TOLERANCE_MM = 20.0
NUM_THREADS = max(1, min(8, os.cpu_count() or 1))


@dataclasses.dataclass(eq=False)
class Config(tfds.core.BuilderConfig):
    """Builder options (README.md; `python -m data_builders.build mpi_inf_3dhp --help-options`)."""

    root_dir: str = ""                # the release folder (S1..S8, mpi_inf_3dhp_test_set); required
    image_size: int = 256             # crop side N, pixels
    on_bad_input: str = "error"       # "error": stop, naming the file; "skip": count, log, go on
    train_subjects: str = ",".join(SUBJECTS)   # "" builds no train split
    train_sequences: str = ",".join(SEQUENCES)
    cameras: str = "0,2,4,7,8"        # train views: the chest-height cameras
    frame_stride: int = 10            # train: every n-th video frame
    fg_channel: str = "red"           # FGmasks channel: red = not green screen
    fg_threshold: int = 128           # FGmasks: foreground above this (0-255)
    mask_cleanup: str = "largest_inner"   # FGmasks components kept: largest_inner | largest | none
    test_sequences: str = ",".join(TEST_SEQUENCES)   # "" builds no test split
    test_frame_stride: int = 1        # test: every n-th frame (invalid frames are always left out)
    test_mask_source: str = "median"  # "median": background subtraction; "png_dir": from mask_dir
    mask_dir: str = ""                # png_dir: <mask_dir>/TS1/img_000001.png ...
    median_frames: int = 50           # median: frames spread over the sequence for the background
    test_cameras: str = ""            # pickle of test intrinsics (mmpose layout); "" = bundled


_DEFAULTS = Config(name="default")


options_lib.describe(_DEFAULTS)


def _cameras(config: Config) -> tuple:
    return tuple(int(c) for c in options_lib.split_list(config.cameras))


def _check_names(config: Config, option: str, allowed: tuple) -> None:
    values = options_lib.split_list(getattr(config, option))
    unknown = [v for v in values if v not in allowed]
    if unknown or len(set(values)) != len(values):
        raise ValueError(f"option {option}: {getattr(config, option)!r} has unknown or repeated "
                         f"names; choose from {','.join(allowed)}")


def make_config(**options) -> Config:
    """A `Config` for `options`, checked, named after the options that differ from the defaults.

    `root_dir` is required, so the name always holds its hash: builds of different copies of the
    release never share a folder.
    """
    config = Config(name="default", **options)
    options_lib.check_release(config, "the folder of the MPI-INF-3DHP release")
    _check_names(config, "train_subjects", SUBJECTS)
    _check_names(config, "train_sequences", SEQUENCES)
    _check_names(config, "test_sequences", TEST_SEQUENCES)
    if not options_lib.split_list(config.train_subjects) and not options_lib.split_list(config.test_sequences):
        raise ValueError("options train_subjects and test_sequences are both empty: "
                         "nothing to build")
    if options_lib.split_list(config.train_subjects) and not options_lib.split_list(config.train_sequences):
        raise ValueError("option train_sequences is empty")
    try:
        cameras = _cameras(config)
    except ValueError:
        cameras = (-1,)
    if (not cameras or len(set(cameras)) != len(cameras)
            or not all(0 <= c < release.NUM_CAMERAS for c in cameras)):
        raise ValueError(f"option cameras must list distinct camera numbers 0-"
                         f"{release.NUM_CAMERAS - 1}, got {config.cameras!r}")
    for option in ("frame_stride", "test_frame_stride", "median_frames"):
        if getattr(config, option) < 1:
            raise ValueError(f"option {option} must be >= 1, got {getattr(config, option)}")
    if config.fg_channel not in release.FG_CHANNELS:
        raise ValueError(f"option fg_channel must be one of {tuple(release.FG_CHANNELS)}, "
                         f"got {config.fg_channel!r}")
    if not 0 <= config.fg_threshold < 255:
        raise ValueError(f"option fg_threshold must be in 0..254, got {config.fg_threshold}")
    if config.mask_cleanup not in release.MASK_CLEANUPS:
        raise ValueError(f"option mask_cleanup must be one of {release.MASK_CLEANUPS}, "
                         f"got {config.mask_cleanup!r}")
    if config.test_mask_source not in TEST_MASK_SOURCES:
        raise ValueError(f"option test_mask_source must be one of {TEST_MASK_SOURCES}, "
                         f"got {config.test_mask_source!r}")
    if (config.test_mask_source == "png_dir") != bool(config.mask_dir):
        raise ValueError("option mask_dir is needed with test_mask_source=png_dir, and only then")
    if config.mask_dir and not os.path.isdir(config.mask_dir):
        raise FileNotFoundError(f"option mask_dir: no such folder {config.mask_dir!r}")
    if config.test_cameras and not os.path.isfile(config.test_cameras):
        raise FileNotFoundError(f"option test_cameras: no such file {config.test_cameras!r}")
    return options_lib.named(config, _DEFAULTS, paths=PATH_OPTIONS)


class Builder(tfds.core.GeneratorBasedBuilder):
    """MPI-INF-3DHP (`mpi_inf_3dhp`): V = len(cameras) views in train, 1 in test."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [_DEFAULTS]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
                description=__doc__.splitlines()[0],
                # The number of views differs between the splits: the view axis is left open.
                features=frames.features(None, self.builder_config.image_size),
                homepage="https://vcai.mpi-inf.mpg.de/3dhp-dataset/",
                citation="Mehta et al., Monocular 3D Human Pose Estimation In The Wild Using "
                         "Improved CNN Supervision, 3DV 2017.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        config = self.builder_config
        splits = {}
        if options_lib.split_list(config.train_subjects):
            splits["train"] = self._generate_examples("train")
        if options_lib.split_list(config.test_sequences):
            splits["test"] = self._generate_examples("test")
        return splits

    def _generate_examples(self, split):
        skips = frames.Skips(self.builder_config.on_bad_input, DATASET)
        examples = train_examples if split == "train" else test_examples
        yield from examples(self.builder_config, skips)
        skips.report(split)


def train_examples(config: Config, skips: frames.Skips):
    """Yields (key, example) of the train split, subject by subject, sequence by sequence."""
    with futures.ThreadPoolExecutor(max_workers=NUM_THREADS) as pool:
        for subject in options_lib.split_list(config.train_subjects):
            subject_dir = os.path.join(config.root_dir, subject)
            if not os.path.isdir(subject_dir):
                skips(BadInput(f"{subject_dir}: no such subject folder"), "subjects")
                continue
            for sequence in options_lib.split_list(config.train_sequences):
                yield from _train_sequence(config, subject, sequence, skips, pool)


# What `_next_frames` gives for a stream that has ended (a skipped frame is `video.SKIPPED`).
_END = object()


def _next_frames(pool, streams):
    """The next frame of every stream (`_END` where it has ended), decoded in parallel.

    Every decode finishes before an error is raised, so the streams can be closed after it.
    """
    jobs = [pool.submit(next, stream, _END) for stream in streams]
    futures.wait(jobs)
    return [job.result() for job in jobs]


def _train_sequence(config, subject, sequence, skips, pool):
    seq_dir = os.path.join(config.root_dir, subject, sequence)
    cams = _cameras(config)
    annot_path = os.path.join(seq_dir, "annot.mat")
    try:
        if not os.path.isdir(seq_dir):
            raise BadInput(f"{seq_dir}: no such sequence folder")
        calibration_path = os.path.join(seq_dir, "camera.calibration")
        calibration = release.load_calibration(calibration_path)
        absent = [c for c in cams if c not in calibration]
        if absent:
            raise BadInput(f"{calibration_path}: no camera {absent} (it has {sorted(calibration)})")
        annotations = release.load_train_annotations(annot_path, cams)
        image_paths, mask_paths = zip(
                *(release.train_paths(config.root_dir, subject, sequence, c) for c in cams))
        for path in image_paths + mask_paths:
            if not os.path.isfile(path):
                raise BadInput(f"{path}: no such video file")
    except BadInput as error:
        skips(error, "sequences")
        return
    rows = {int(f): r for r, f in enumerate(annotations.frames_T)}
    expected = max(rows) + 1 if rows else 0
    paths = image_paths + mask_paths

    def sampled(index):
        return index % config.frame_stride == 0 and index in rows

    streams = [video.iter_frames(p, keep=sampled) for p in paths]
    num_views = len(cams)
    frame, decoded = 0, []
    try:
        while True:
            try:
                decoded = _next_frames(pool, streams)
            except BadInput as error:
                skips(error, "corrupt videos")
                return
            if frame == expected or any(x is _END for x in decoded):
                break
            if sampled(frame):
                views = [calibration[c] for c in cams]
                try:
                    example = _train_example(config, pool, views, decoded[:num_views],
                                             decoded[num_views:], paths, frame)
                    joints_Vx17x3 = [annotations.joints_cam[c][rows[frame]] for c in cams]
                    joints_world, spread = release.world_from_views(
                            joints_Vx17x3, [v.extrinsics for v in views])
                    if spread > WORLD_TOLERANCE_MM:
                        raise BadInput(f"{annot_path}: frame {frame}: the cameras' annotations "
                                       f"disagree by {spread:.0f} mm in the world frame (is "
                                       f"camera.calibration this sequence's?)")
                except BadInput as error:
                    skips(error, "frames")
                else:
                    example["joints_world"] = joints_world.astype(np.float32)
                    example["meta"] = {
                            "subject": subject, "action": f"{subject}/{sequence}", "frame": frame,
                            "camera": [f"{subject}/{sequence}/cam{c}" for c in cams]}
                    yield f"{subject}_{sequence}_{frame:06d}", example
            frame += 1
    finally:
        for stream in streams:
            stream.close()
    if frame < expected:
        short = next(p for p, x in zip(paths, decoded) if x is _END)
        lost = sum(1 for f in rows if frame <= f < expected and sampled(f))
        skips(BadInput(f"{short}: the video has {frame} frames, {annot_path} annotates {expected} "
                       f"({lost} sampled frames past its end left out)"), "frame-count mismatches")
    elif not all(x is _END for x in decoded):
        longer = next(p for p, x in zip(paths, decoded) if x is not _END)
        skips(BadInput(f"{longer}: the video has more than the {expected} frames {annot_path} "
                       f"annotates"), "frame-count mismatches")


def _train_example(config, pool, views, images, fg_frames, paths, frame):
    """Crops the V views of one frame (joints and metadata are added by the caller)."""
    num_views = len(views)

    def crop(k):
        camera, image = views[k], images[k]
        if image.shape[:2] != (camera.height, camera.width):
            raise BadInput(f"{paths[k]}: frame {frame} is {image.shape[1]}×{image.shape[0]} "
                           f"pixels, camera.calibration says {camera.width}×{camera.height}")
        mask = release.fg_mask(fg_frames[k], config.fg_channel, config.fg_threshold,
                               config.mask_cleanup)
        return frames.crop_view(image, mask, config.image_size,
                                source=f"{paths[num_views + k]} frame {frame}")

    return {
            **frames.stack_views(list(pool.map(crop, range(num_views)))),
            "intrinsics": np.stack([v.intrinsics for v in views]).astype(np.float32),
            "extrinsics": np.stack([v.extrinsics for v in views]).astype(np.float32),
            "distortion": np.zeros((num_views, 5), np.float32),
    }


def test_examples(config: Config, skips: frames.Skips):
    """Yields (key, example) of the test split: valid frames of each test sequence, one view."""
    rig = release.load_test_cameras(config.test_cameras or release.TEST_CAMERAS_PATH)
    for sequence in options_lib.split_list(config.test_sequences):
        yield from _test_sequence(config, sequence, rig, skips)


def _count_images(image_dir):
    if not os.path.isdir(image_dir):
        raise BadInput(f"{image_dir}: no such image folder")
    return sum(1 for name in os.listdir(image_dir) if re.fullmatch(r"img_\d{6}\.jpg", name))


def _median_background(config, sequence, num_frames):
    """Per-pixel median of `median_frames` frames spread over the sequence (valid or not)."""
    count = min(config.median_frames, num_frames)
    indices = np.unique(np.rint(np.linspace(0, num_frames - 1, count)).astype(int))
    images = [frames.read_image(release.test_image_path(config.root_dir, sequence, int(t)))
              for t in indices]
    if len({im.shape for im in images}) > 1:
        raise BadInput(f"{config.root_dir}/{release.TEST_SET_DIR}/{sequence}/imageSequence: "
                       f"images of different sizes")
    return background_lib.median_background(images)


def _test_sequence(config, sequence, rig, skips):
    seq_dir = os.path.join(config.root_dir, release.TEST_SET_DIR, sequence)
    annot_path = os.path.join(seq_dir, "annot_data.mat")
    try:
        if not os.path.isdir(seq_dir):
            raise BadInput(f"{seq_dir}: no such test sequence folder")
        if sequence not in rig:
            raise BadInput(f"{config.test_cameras or release.TEST_CAMERAS_PATH}: no camera for "
                           f"{sequence}")
        camera = rig[sequence]
        annotations = release.load_test_annotations(annot_path)
        num_frames = len(annotations.valid_T)
        image_dir = os.path.join(seq_dir, "imageSequence")
        count = _count_images(image_dir)
        if count != num_frames:
            raise BadInput(f"{image_dir}: {count} images, {annot_path} annotates {num_frames} "
                           f"frames")
        background = (_median_background(config, sequence, num_frames)
                      if config.test_mask_source == "median" else None)
    except BadInput as error:
        skips(error, "sequences")
        return
    for frame in range(0, num_frames, config.test_frame_stride):
        if not annotations.valid_T[frame]:
            continue
        image_path = release.test_image_path(config.root_dir, sequence, frame)
        try:
            image = frames.read_image(image_path)
            if image.shape[:2] != (camera.height, camera.width):
                raise BadInput(f"{image_path}: is {image.shape[1]}×{image.shape[0]} pixels, the "
                               f"test camera of {sequence} {camera.width}×{camera.height}")
            if background is None:
                source = os.path.join(config.mask_dir, sequence, f"img_{frame + 1:06d}.png")
                mask = frames.read_mask(source)
            else:
                source = f"{image_path} (median background)"
                mask = background_lib.foreground_mask(image, background)
            view = frames.crop_view(image, mask, config.image_size, source=source)
            action = release.activity_name(annotations.activity_T[frame],
                                           f"{annot_path} frame {frame}")
        except BadInput as error:
            skips(error, "frames")
            continue
        yield f"{sequence}_{frame:06d}", {
                **frames.stack_views([view]),
                "intrinsics": camera.intrinsics[None].astype(np.float32),
                "extrinsics": camera.extrinsics[None].astype(np.float32),
                "distortion": np.zeros((1, 5), np.float32),
                "joints_world": annotations.joints_cam_Tx17x3[frame].astype(np.float32),
                "meta": {"subject": sequence, "action": action, "frame": frame,
                         "camera": [f"{sequence}/{camera.name}"]},
        }
