"""Writes `dummy_data/`: two tiny videos in the TikTok dancing dataset's layout, for the tests.

    python -m data_builders.in_the_wild.make_dummy_data [--out DIR]

Each video is 6 frames of 64×96 pixels (portrait, like the TikTok videos): a person drawn as
ellipses (head, torso, arms, legs) that walks and swings its limbs over a static textured
background, and the matching masks. `00001` has PNG frames and grey masks, `00002` JPEG frames and
RGB masks (both forms occur in the wild). The output is deterministic: the same bytes every run
(on one Pillow version) and the same pixels everywhere.
"""

import argparse
import os

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 64, 96
NUM_FRAMES = 6
DUMMY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dummy_data")
# video -> (frame file suffix, mask PIL mode, start column, walking step in px, swing phase)
VIDEOS = {"00001": (".png", "L", 24.0, 3.0, 0.0),
          "00002": (".jpg", "RGB", 40.0, -2.0, 1.3)}
SKIN, SHIRT, TROUSERS = (224, 172, 140), (40, 90, 200), (30, 30, 40)


def ellipses(video: str, frame: int):
    """The person of `video` at `frame`: ellipses in drawing order.

    Returns:
        list of (name, centre_uv (2,), semi-axes (along, across) px, angle rad, RGB colour); the
        major axis points down (+v) when the angle is 0 and turns towards +u as it grows.
    """
    _, _, start, step, phase = VIDEOS[video]
    cx = start + step * frame
    swing = 0.5 * np.sin(phase + 1.1 * frame)
    parts = []
    for side, sign in (("left", 1.0), ("right", -1.0)):
        angle = sign * 0.5 * swing
        hip = np.array([cx + sign * 5.0, 54.0])
        parts.append((f"{side}_leg", hip + 14.0 * np.array([np.sin(angle), np.cos(angle)]),
                      (15.0, 4.0), angle, TROUSERS))
    parts.append(("torso", np.array([cx, 40.0]), (15.0, 9.0), 0.0, SHIRT))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        angle = sign * (0.6 + 0.4 * swing)
        shoulder = np.array([cx + sign * 9.0, 28.0])
        parts.append((f"{side}_arm", shoulder + 11.0 * np.array([np.sin(angle), np.cos(angle)]),
                      (12.0, 3.0), angle, SKIN))
    parts.append(("head", np.array([cx, 18.0]), (7.0, 6.0), 0.0, SKIN))
    return parts


def inside_points_uv(video: str, frame: int) -> np.ndarray:
    """Points well inside the person (each ellipse's centre and 70% out along its major axis).

    Returns:
        P×2 full-image pixels (u, v).
    """
    points = []
    for _, centre, (along, _), angle, _ in ellipses(video, frame):
        axis = np.array([np.sin(angle), np.cos(angle)])
        points += [centre, centre + 0.7 * along * axis, centre - 0.7 * along * axis]
    return np.array(points)


def _inside(centre, axes, angle):
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    du, dv = cols - centre[0], rows - centre[1]
    along = du * np.sin(angle) + dv * np.cos(angle)
    across = du * np.cos(angle) - dv * np.sin(angle)
    return (along / axes[0]) ** 2 + (across / axes[1]) ** 2 <= 1.0


def background(video: str) -> np.ndarray:
    """The static background of `video`: gradient, tiles and fine noise (H×W×3 uint8)."""
    rng = np.random.default_rng(int(video))
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    tiles = ((rows // 8 + cols // 8) % 2)[..., None] * np.array([30.0, 20.0, -20.0])
    gradient = np.stack([150 + cols, 120 + rows / 2, 90 + 0 * rows], axis=-1).astype(np.float64)
    noise = rng.normal(0.0, 6.0, (HEIGHT, WIDTH, 3))
    return np.clip(np.rint(gradient + tiles + noise), 0, 255).astype(np.uint8)


def draw(video: str, frame: int):
    """Frame and mask of `video` at `frame`.

    Returns:
        (H×W×3 uint8 image, H×W bool mask): the mask is exactly the painted person.
    """
    image = background(video).copy()
    mask = np.zeros((HEIGHT, WIDTH), bool)
    for _, centre, axes, angle, colour in ellipses(video, frame):
        part = _inside(centre, axes, angle)
        image[part] = colour
        mask |= part
    return image, mask


def write(out_dir: str) -> None:
    """Writes `<out_dir>/<video>/images/<NNNN><suffix>` and `<out_dir>/<video>/masks/<NNNN>.png`."""
    for video, (suffix, mask_mode, *_) in VIDEOS.items():
        os.makedirs(os.path.join(out_dir, video, "images"), exist_ok=True)
        os.makedirs(os.path.join(out_dir, video, "masks"), exist_ok=True)
        for frame in range(NUM_FRAMES):
            image, mask = draw(video, frame)
            name = f"{frame + 1:04d}"
            image_path = os.path.join(out_dir, video, "images", name + suffix)
            if suffix == ".jpg":
                Image.fromarray(image).save(image_path, quality=95, subsampling=0)
            else:
                Image.fromarray(image).save(image_path)
            mask_u8 = np.where(mask, 255, 0).astype(np.uint8)
            Image.fromarray(mask_u8).convert(mask_mode).save(
                    os.path.join(out_dir, video, "masks", name + ".png"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DUMMY_DIR, help="output folder")
    args = parser.parse_args(argv)
    write(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
