"""`in_the_wild`: single-view videos stored as folders of frames beside a folder of masks.

The layout is the TikTok dancing dataset's (`<root>/<video>/images/*.png|jpg` with
`<root>/<video>/masks/<same stem>.png`), and any folder of the same shape. Each kept frame becomes
one single-view example (V = 1): a square crop around the **mask's** bounding box, the resampled
mask and its geodesic weight map. There is no ground truth: `joints_world` is NaN, and the one
split is "train".

The camera is unknown. It is stored as a pinhole with fx = fy = `focal_ratio` × max(width,
height), the principal point at the image centre, extrinsics [I|0] and no distortion. With one
view only the crop and the own view's geometry matter: the mask terms live in crop coordinates
and there is no cross-view term, so this camera only enters the lift to 3D (symmetry term). The
single-view root depth (`multiview.fallback_root_depth`) makes the crop span the detector's depth
range whatever the focal length, so a wrong `focal_ratio` changes the perspective of off-centre
rays, not the scale.
"""

import dataclasses
import os
from concurrent import futures

import numpy as np
import tensorflow_datasets as tfds

from data_builders import frames
from data_builders import options as options_lib
from maskpose_jax import skeleton

DATASET = "in_the_wild"
ACTION = "in_the_wild"
CAMERA = "unknown"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGES_DIR, MASKS_DIR = "images", "masks"


@dataclasses.dataclass(eq=False)
class Config(tfds.core.BuilderConfig):
    """Builder options (`python -m data_builders.build in_the_wild --help-options`)."""

    root_dir: str = ""            # required: folder of <video>/images and <video>/masks
    image_size: int = 256         # crop side N, pixels
    on_bad_input: str = "error"   # "error": stop naming the file; "skip": count, log, go on
    frame_stride: int = 1         # keep every k-th frame (in file-name order)
    videos: str = ""              # comma-separated video folder names; "" = every video folder
    focal_ratio: float = 1.2      # assumed focal length / longer image side


_DEFAULTS = Config(name="default")


options_lib.describe(_DEFAULTS)


def make_config(**options) -> Config:
    """A checked `Config` for `options`, named after the options that differ from the defaults.

    Raises:
        ValueError: a bad option value (the message names the option).
        FileNotFoundError: `root_dir` is not a folder.
    """
    config = Config(name="default", **options)
    options_lib.check_release(config, "the folder that holds <video>/images/ and <video>/masks/")
    config.root_dir = os.path.abspath(config.root_dir)
    if config.frame_stride < 1:
        raise ValueError(f"option frame_stride must be >= 1, got {config.frame_stride}")
    if not config.focal_ratio > 0:
        raise ValueError(f"option focal_ratio must be > 0, got {config.focal_ratio}")
    names = [v.strip() for v in config.videos.split(",")] if config.videos else []
    for name in names:
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise ValueError(f"option videos: {name!r} is not a folder name "
                             f"(expected comma-separated names, got {config.videos!r})")
    config.videos = ",".join(sorted(set(names)))
    return options_lib.named(config, _DEFAULTS, paths=("root_dir",), hashed=("videos",))


def pinhole(width: int, height: int, focal_ratio: float):
    """The assumed camera of a frame of `width` × `height` pixels.

    Returns:
        (intrinsics 3×3, extrinsics 3×4 [I|0], distortion 5 zeros), float32; the principal
        point is the image centre, ((width - 1) / 2, (height - 1) / 2) in pixel-centre coordinates.
    """
    focal = focal_ratio * max(width, height)
    intrinsics = np.array([[focal, 0.0, (width - 1) / 2.0],
                           [0.0, focal, (height - 1) / 2.0],
                           [0.0, 0.0, 1.0]], np.float32)
    extrinsics = np.concatenate([np.eye(3), np.zeros((3, 1))], axis=1).astype(np.float32)
    return intrinsics, extrinsics, np.zeros(5, np.float32)


def read_mask(path: str) -> np.ndarray:
    """A mask PNG (grey, RGB or palette) as H×W float32 in {0, 1}: foreground where any colour
    channel is above 127. BadInput naming the file if it is missing or unreadable."""
    return (frames.read_mask(path) > 0.5).astype(np.float32)


def frame_files(video_dir: str) -> list[str]:
    """The image files of `<video_dir>/images`, sorted by file name.

    Raises:
        BadInput: no `images` or `masks` folder, or no image in `images`.
    """
    for sub in (IMAGES_DIR, MASKS_DIR):
        if not os.path.isdir(os.path.join(video_dir, sub)):
            raise frames.BadInput(f"{os.path.join(video_dir, sub)}: no such folder")
    images_dir = os.path.join(video_dir, IMAGES_DIR)
    names = sorted(f for f in os.listdir(images_dir)
                   if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."))
    if not names:
        raise frames.BadInput(f"{images_dir}: no image file ({', '.join(IMAGE_SUFFIXES)})")
    return names


def video_names(root_dir: str, videos: str) -> list[str]:
    """The videos to read: those listed in `videos`, or every folder of `root_dir` that has an
    `images` folder.

    Raises:
        FileNotFoundError: `videos` is empty and no folder of `root_dir` looks like a video.
    """
    if videos:
        return videos.split(",")
    found = sorted(d for d in os.listdir(root_dir)
                   if os.path.isdir(os.path.join(root_dir, d, IMAGES_DIR)))
    if not found:
        raise FileNotFoundError(f"{root_dir}: no video folder (<video>/{IMAGES_DIR}/ with "
                                f"<video>/{MASKS_DIR}/) in it")
    return found


class Builder(tfds.core.GeneratorBasedBuilder):
    """Single-view in-the-wild videos with masks (`in_the_wild`)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [_DEFAULTS]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__.splitlines()[0],
            features=frames.features(1, self.builder_config.image_size),
            homepage="https://www.yasamin.page/hdnet_tiktok",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        root_dir = self.builder_config.root_dir
        if not os.path.isdir(root_dir):
            raise FileNotFoundError(f"option root_dir: no such folder {root_dir!r}")
        return {"train": self._generate_examples(video_names(root_dir, self.builder_config.videos))}

    def _generate_examples(self, videos):
        config = self.builder_config
        skips = frames.Skips(config.on_bad_input, DATASET)
        count = 0
        # PNG/JPEG decoding, resampling and fast marching release the GIL: two threads, two cores.
        pool = futures.ThreadPoolExecutor(max_workers=2)
        try:
            for video in videos:
                video_dir = os.path.join(config.root_dir, video)
                try:
                    if not os.path.isdir(video_dir):
                        raise frames.BadInput(f"{video_dir}: no such video folder")
                    names = frame_files(video_dir)
                except frames.BadInput as error:
                    skips(error, "missing_video")
                    continue
                jobs = [(video, index, name) for index, name in enumerate(names)
                        if index % config.frame_stride == 0]
                for key, example, kind in pool.map(self._example, jobs):
                    if isinstance(example, frames.BadInput):
                        skips(example, kind)
                        continue
                    count += 1
                    yield key, example
        finally:
            # On an error, the rest of the video's frames are dropped, not computed first.
            pool.shutdown(cancel_futures=True)
        skips.report("train")
        if count == 0:
            raise frames.BadInput(f"{config.root_dir}: no example could be made "
                                  f"(skipped: {dict(skips.counts)})")

    def _example(self, job):
        """One frame: returns (key, example, "") or (key, BadInput, kind of fault)."""
        video, index, name = job
        config = self.builder_config
        key = f"{video}_{index:06d}"
        image_path = os.path.join(config.root_dir, video, IMAGES_DIR, name)
        mask_path = os.path.join(config.root_dir, video, MASKS_DIR,
                                 os.path.splitext(name)[0] + ".png")
        if not os.path.isfile(mask_path):
            error = frames.BadInput(f"{mask_path}: no mask for frame {image_path}")
            return key, error, "missing_mask"
        try:
            image_HxWx3 = frames.read_image(image_path)
            mask_HxW = read_mask(mask_path)
        except frames.BadInput as error:
            return key, error, "unreadable_file"
        height, width = image_HxWx3.shape[:2]
        try:
            view = frames.crop_view(image_HxWx3, mask_HxW, config.image_size,
                                    source=f"{mask_path} (frame {image_path})")
        except frames.BadInput as error:  # a mask of the wrong size, or an empty one
            return key, error, "mask_size" if mask_HxW.shape != (height, width) else "empty_mask"
        intrinsics, extrinsics, distortion = pinhole(width, height, config.focal_ratio)
        example = {
                **frames.stack_views([view]),
                "intrinsics": intrinsics[None],
                "extrinsics": extrinsics[None],
                "distortion": distortion[None],
                "joints_world": np.full((skeleton.NUM_JOINTS, 3), np.nan, np.float32),
                "meta": {"subject": video, "action": ACTION, "frame": index,
                         "camera": [CAMERA]},
        }
        return key, example, ""
