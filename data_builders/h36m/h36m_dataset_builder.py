"""`h36m`: Human3.6M, one example per frame seen by all selected cameras (DESIGN §12).

Reads the official release as extracted (`release.py`): per sequence, the 3D poses (CDF, 32
joints -> our 17, world frame, mm) and the V videos, decoded in lockstep and streaming; the
frames `frame_stride` apart (or `frames_per_sequence` evenly spread) become examples. Each view
is cropped around its **mask's** bounding box (`frames.crop_view`) with masks from `mask_source`
(`masks.py`: the release's background subtraction, a folder of PNGs, or a median background);
cameras come from `cameras.json` (`calibration.py`). Ground-truth joints go only into
`joints_world`, for evaluation.

Bad inputs (missing subject or file, unreadable or truncated video, a frame count that differs
from the poses', a mask of the wrong size or empty) are errors naming the file, or with
`on_bad_input=skip` counted skips of the subject, sequence or frame (`Builder.skipped`).
"""

import contextlib
import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from data_builders import frames
from data_builders import options as options_lib
from data_builders import video
from data_builders.h36m import calibration
from data_builders.h36m import masks as masks_lib
from data_builders.h36m import release

DATASET = "h36m"


@dataclasses.dataclass(eq=False)
class Config(tfds.core.BuilderConfig):
    """Builder options (`python -m data_builders.build h36m --help-options`)."""

    root_dir: str = ""              # the extracted release (folders S1, S5, ...); required
    image_size: int = 256           # crop side N, pixels
    on_bad_input: str = "error"     # "error": stop naming the file; "skip": count and skip it
    mask_source: str = "bs_mat"     # "bs_mat" (release's .mat), "png_dir" (mask_dir), "median"
    mask_dir: str = ""              # mask_source=png_dir: <mask_dir>/<S>/<seq>.<cam>/<frame>.png
    background_frames: int = 60     # mask_source=median: frames per (subject, camera) median
    train_subjects: str = "S1,S5,S6,S7,S8"
    test_subjects: str = "S9,S11"
    cameras: str = ",".join(release.CAMERA_IDS)   # camera ids, in view order
    frame_stride: int = 5           # frames 0, s, 2s, ... of each sequence (50 fps)
    frames_per_sequence: int = 0    # N > 0: N frames evenly spread instead of the stride
    exclude_actions: str = ""       # base action names (release.ACTIONS) left out


_DEFAULTS = Config(name="default")
_LIST_OPTIONS = ("train_subjects", "test_subjects", "cameras", "exclude_actions")
_PATH_OPTIONS = ("root_dir", "mask_dir")


options_lib.describe(_DEFAULTS)


def _check(config: Config) -> None:
    """Raises ValueError (FileNotFoundError for folders) naming the option that is wrong."""
    options_lib.check_release(config, "the folder of the extracted Human3.6M release "
                                      "(holding S1, S5, ...)")
    if config.mask_source not in masks_lib.MASK_SOURCES:
        raise ValueError(f"option mask_source must be one of {masks_lib.MASK_SOURCES}, "
                         f"got {config.mask_source!r}")
    if config.mask_source == "png_dir":
        if not config.mask_dir:
            raise ValueError("option mask_dir is required with mask_source=png_dir")
        if not os.path.isdir(config.mask_dir):
            raise FileNotFoundError(f"option mask_dir: no such folder {config.mask_dir!r}")
    elif config.mask_dir:
        raise ValueError(f"option mask_dir is only read with mask_source=png_dir "
                         f"(mask_source is {config.mask_source!r})")
    if config.background_frames < 1:
        raise ValueError(f"option background_frames must be >= 1, got {config.background_frames}")
    known = sorted({s for s, _ in calibration.load_cameras()}, key=lambda s: int(s[1:]))
    train, test = options_lib.split_list(config.train_subjects), options_lib.split_list(config.test_subjects)
    for option, subjects in (("train_subjects", train), ("test_subjects", test)):
        unknown = [s for s in subjects if s not in known]
        if unknown or len(set(subjects)) != len(subjects):
            raise ValueError(f"option {option}: {getattr(config, option)!r} must list distinct "
                             f"subjects of {known}")
    if not train and not test:
        raise ValueError("options train_subjects and test_subjects are both empty")
    if set(train) & set(test):
        raise ValueError(f"options train_subjects and test_subjects share "
                         f"{sorted(set(train) & set(test))}")
    cameras = options_lib.split_list(config.cameras)
    if not cameras or len(set(cameras)) != len(cameras) or set(cameras) - set(release.CAMERA_IDS):
        raise ValueError(f"option cameras: {config.cameras!r} must list distinct ids of "
                         f"{release.CAMERA_IDS}")
    if config.frame_stride < 1:
        raise ValueError(f"option frame_stride must be >= 1, got {config.frame_stride}")
    if config.frames_per_sequence < 0:
        raise ValueError(f"option frames_per_sequence must be >= 0, got "
                         f"{config.frames_per_sequence}")
    if config.frames_per_sequence and config.frame_stride != _DEFAULTS.frame_stride:
        raise ValueError("options frame_stride and frames_per_sequence: set one of them "
                         "(frames_per_sequence > 0 replaces the stride)")
    unknown = [a for a in options_lib.split_list(config.exclude_actions) if a not in release.ACTIONS]
    if unknown:
        raise ValueError(f"option exclude_actions: {unknown} are not actions; actions: "
                         f"{', '.join(release.ACTIONS)}")


def make_config(**options) -> Config:
    """A checked `Config` for `options`, named after the options that differ from the defaults.

    Lists are normalized (no spaces); folders enter the name as a hash of their absolute path.
    `root_dir` is required, so a config is never the bare "default".
    """
    config = Config(name="default", **options)
    for key in _LIST_OPTIONS:
        setattr(config, key, ",".join(options_lib.split_list(getattr(config, key))))
    _check(config)
    return options_lib.named(config, _DEFAULTS, paths=_PATH_OPTIONS)


def frame_indices(num_frames: int, stride: int, per_sequence: int) -> list[int]:
    """Frames of a T-frame sequence that become examples.

    Args:
        num_frames: T.
        stride: frames 0, stride, 2·stride, ... (when `per_sequence` is 0).
        per_sequence: N > 0: N frames evenly spread from the first to the last (all T when N >= T).

    Returns:
        sorted distinct frame indices.
    """
    if per_sequence <= 0:
        return list(range(0, num_frames, stride))
    if per_sequence >= num_frames:
        return list(range(num_frames))
    if per_sequence == 1:
        return [0]
    return [int(i) for i in np.floor(np.linspace(0, num_frames - 1, per_sequence) + 0.5)]


class Builder(tfds.core.GeneratorBasedBuilder):
    """Human3.6M (`h36m`). After `download_and_prepare`, `skipped[split]` counts skipped inputs."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [_DEFAULTS]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.skipped = {}

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            description=__doc__.splitlines()[0],
            features=frames.features(len(options_lib.split_list(config.cameras)), config.image_size),
            homepage="http://vision.imar.ro/human3.6m/",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        config = self.builder_config
        calibrations = calibration.load_cameras()
        return {split: self._generate_examples(split, subjects, calibrations)
                for split, subjects in (("train", options_lib.split_list(config.train_subjects)),
                                        ("test", options_lib.split_list(config.test_subjects))) if subjects}

    def _generate_examples(self, split, subjects, calibrations):
        config = self.builder_config
        skips = frames.Skips(config.on_bad_input, DATASET)
        excluded = set(options_lib.split_list(config.exclude_actions))
        count = 0
        for subject in subjects:
            try:
                every_sequence = release.list_sequences(config.root_dir, subject)
                sequences = [s for s in every_sequence if s.action not in excluded]
                backgrounds = (self._backgrounds(subject, every_sequence)
                               if config.mask_source == "median" and sequences else None)
            except frames.BadInput as error:
                skips(error, "subject")
                continue
            for sequence in sequences:
                try:
                    for key, example in self._sequence_examples(
                            sequence, calibrations, backgrounds, skips):
                        count += 1
                        yield key, example
                except frames.BadInput as error:
                    skips(error, "sequence")
        skips.report(split)
        self.skipped[split] = dict(skips.counts)
        if count == 0:
            raise frames.BadInput(f"{DATASET} {split}: no example in {config.root_dir} for "
                                  f"subjects {', '.join(subjects)} "
                                  f"(skipped: {self.skipped[split]})")

    def _backgrounds(self, subject, sequences):
        """Median background per selected camera over all of `subject`'s videos (all actions)."""
        config = self.builder_config
        return {camera_id: masks_lib.camera_background(
                    [release.video_path(config.root_dir, subject, s.name, camera_id)
                     for s in sequences],
                    config.background_frames, label=f"{subject}/{camera_id}")
                for camera_id in options_lib.split_list(config.cameras)}

    def _mask_source(self, stack, sequence, camera_id, video_path, num_frames, indices,
                     backgrounds):
        config = self.builder_config
        if config.mask_source == "bs_mat":
            return stack.enter_context(masks_lib.BsMatMasks(release.bs_mask_path(
                config.root_dir, sequence.subject, sequence.name, camera_id), num_frames))
        if config.mask_source == "png_dir":
            return masks_lib.PngMasks(config.mask_dir, sequence.subject, sequence.name,
                                      camera_id, indices)
        return masks_lib.MedianMasks(backgrounds[camera_id], video_path)

    def _sequence_examples(self, sequence, calibrations, backgrounds, skips):
        """Yields the (key, example) of one sequence; a bad frame is skipped through `skips`.

        Raises:
            BadInput: for the whole sequence: missing or unreadable poses, video or mask file, or
                a video whose frame count differs from the poses' (all checked before the first
                example); a video that stops decoding early (found while decoding: the examples
                before it are kept).
        """
        config = self.builder_config
        camera_ids = options_lib.split_list(config.cameras)
        joints_TxJx3 = release.load_poses(sequence.poses_path)
        num_frames = len(joints_TxJx3)
        indices = frame_indices(num_frames, config.frame_stride, config.frames_per_sequence)
        videos = [release.video_path(config.root_dir, sequence.subject, sequence.name, c)
                  for c in camera_ids]
        for path in videos:
            count = release.count_video_frames(path)
            if count != num_frames:
                raise frames.BadInput(f"{path}: the video has {count} frames, the poses "
                                      f"{sequence.poses_path} have {num_frames}")
        rig = []
        for camera_id in camera_ids:
            if (sequence.subject, camera_id) not in calibrations:
                raise frames.BadInput(f"{calibration.CAMERAS_JSON}: no calibration of camera "
                                      f"{camera_id} for {sequence.subject}")
            rig.append(calibrations[sequence.subject, camera_id])
        wanted = set(indices)
        with contextlib.ExitStack() as stack:
            sources = [self._mask_source(stack, sequence, c, v, num_frames, indices, backgrounds)
                       for c, v in zip(camera_ids, videos)]
            streams = [stack.enter_context(contextlib.closing(
                video.iter_frames(v, keep=wanted.__contains__))) for v in videos]
            intrinsics = None
            decoded = 0
            for index, views in enumerate(zip(*streams)):
                decoded = index + 1
                if index in wanted:
                    if intrinsics is None:  # every view's size against its calibration, once
                        intrinsics = np.stack([calibration.scaled_intrinsics(
                            cam, frame.shape[1], frame.shape[0], source=v)
                            for cam, frame, v in zip(rig, views, videos)])
                    try:
                        crops = [self._crop(frame, source, index) for frame, source
                                 in zip(views, sources)]
                    except frames.BadInput as error:
                        skips(error, "frame")
                    else:
                        yield self._example(sequence, index, crops, intrinsics, rig,
                                            joints_TxJx3)
                if index == indices[-1]:
                    return
            raise frames.BadInput(f"{sequence.subject} {sequence.name!r}: the videos "
                                  f"{', '.join(videos)} end after {decoded} decodable frames; "
                                  f"frame {indices[-1]} was asked for")

    def _crop(self, frame_HxWx3, mask_source, index):
        mask_HxW, source = mask_source(index, frame_HxWx3)
        return frames.crop_view(frame_HxWx3, mask_HxW, self.builder_config.image_size,
                                source=source)

    def _example(self, sequence, index, crops, intrinsics, rig, joints_TxJx3):
        key = f"{sequence.subject}_{sequence.name.replace(' ', '_')}_{index:06d}"
        return key, {
                **frames.stack_views(crops),
                "intrinsics": intrinsics.astype(np.float32),
                "extrinsics": np.stack([c.extrinsics for c in rig]).astype(np.float32),
                "distortion": np.stack([c.distortion for c in rig]).astype(np.float32),
                "joints_world": joints_TxJx3[index].astype(np.float32),
                "meta": {"subject": sequence.subject, "action": sequence.action,
                         "frame": index, "camera": [c.camera_id for c in rig]},
        }
