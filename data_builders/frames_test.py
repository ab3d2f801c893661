"""Tests of `data_builders.frames`: the resampler against float64 brute-force references, the mask
box and crop, `crop_view`'s outputs and errors, the bad-input policy and the feature shapes."""

import io

import numpy as np
import pytest
from PIL import Image

from data_builders import frames
from data_builders import geodesic
from maskpose_jax import geometry
from maskpose_jax import skeleton


def _crop(center_uv, side, n):
    return np.asarray(geometry.crop_affine(np.asarray(center_uv, np.float64), float(side), n),
                      np.float64)


def _full_from_crop(crop_2x3):
    lin_inv = np.linalg.inv(crop_2x3[:, :2])
    return np.concatenate([lin_inv, -(lin_inv @ crop_2x3[:, 2])[:, None]], axis=1)


def _gaussian_bilinear_reference(image_HxWxC, crop_2x3, n):
    """The docstring's promise, written out pixel by pixel in float64: a Gaussian of sigma
    0.4 × step (kernel truncated at 4 sigma and normalized, zeros outside the image) when the
    crop downsamples, then bilinear sampling at each crop pixel centre."""
    image = np.asarray(image_HxWxC, np.float64)
    height, width, channels = image.shape
    full_from_crop = _full_from_crop(crop_2x3)
    step = abs(full_from_crop[0, 0])
    sigma = 0.4 * step if step > 1.0 else 0.0
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * taps ** 2 / sigma ** 2) if sigma else np.ones(1)
    kernel /= kernel.sum()

    def blurred(i, j):
        value = np.zeros(channels)
        for di, gi in zip(taps, kernel):
            for dj, gj in zip(taps, kernel):
                if 0 <= i + di < height and 0 <= j + dj < width:
                    value += gi * gj * image[i + di, j + dj]
        return value

    out = np.zeros((n, n, channels))
    for row in range(n):
        for col in range(n):
            u, v = full_from_crop @ np.array([col, row, 1.0])
            j0, i0 = int(np.floor(u)), int(np.floor(v))
            fu, fv = u - j0, v - i0
            out[row, col] = ((1 - fv) * (1 - fu) * blurred(i0, j0) + (1 - fv) * fu * blurred(i0, j0 + 1)
                             + fv * (1 - fu) * blurred(i0 + 1, j0) + fv * fu * blurred(i0 + 1, j0 + 1))
    return out


def _area_average_reference(image_HxWxC, crop_2x3, n):
    """Exact mean of the pixel-constant image over each crop pixel's square footprint."""
    image = np.asarray(image_HxWxC, np.float64)
    height, width, _ = image.shape
    full_from_crop = _full_from_crop(crop_2x3)
    step = full_from_crop[0, 0]

    def overlaps(lo, count):
        left = np.arange(count) - 0.5
        return np.clip(np.minimum(lo + step, left + 1) - np.maximum(lo, left), 0, None)

    out = np.zeros((n, n, image.shape[2]))
    for row in range(n):
        for col in range(n):
            u0, v0 = full_from_crop @ np.array([col - 0.5, row - 0.5, 1.0])
            out[row, col] = np.einsum("i,j,ijc->c", overlaps(v0, height), overlaps(u0, width),
                                      image) / step ** 2
    return out


@pytest.mark.parametrize("center_uv, side, n", [
        ((20.3, 15.6), 30.0, 12),   # downsampling 2.5x
        ((3.0, 30.0), 8.0, 20),     # upsampling, crop partly left of the image
        ((45.0, 35.0), 60.0, 10),   # downsampling 6x, crop past the bottom-right corner
        ((25.0, 20.0), 13.0, 13),   # one source pixel per crop pixel
])
def test_warp_matches_gaussian_then_bilinear_reference(center_uv, side, n):
    rng = np.random.default_rng(n)
    image = rng.uniform(0, 255, (40, 50, 2))
    crop = _crop(center_uv, side, n)
    np.testing.assert_allclose(frames.warp_to_crop(image, crop, n),
                               _gaussian_bilinear_reference(image, crop, n), atol=1e-3)


@pytest.mark.parametrize("side, n", [(150.0, 16), (90.0, 24)])
def test_downsampling_approximates_the_area_average_on_smooth_images(side, n):
    """On images smooth at the crop's scale (periods >= 8 crop pixels) the anti-aliased warp is
    within 3% of the amplitude of the exact area average."""
    rng = np.random.default_rng(int(side))
    rows, cols = np.mgrid[0:220, 0:200]
    step = side / n
    image = np.zeros((220, 200, 1))
    for _ in range(4):
        period = step * rng.uniform(8, 16)
        angle, phase = rng.uniform(0, 2 * np.pi, 2)
        image[..., 0] += 25 * np.sin(2 * np.pi * (cols * np.cos(angle) + rows * np.sin(angle))
                                     / period + phase)
    crop = _crop((100.0, 110.0), side, n)  # well inside the image
    out = frames.warp_to_crop(image, crop, n)
    reference = _area_average_reference(image, crop, n)
    assert np.abs(out - reference).max() < 0.03 * 100
    # ... and not merely because the image is flat.
    assert reference.std() > 10


def test_constant_image_stays_constant_inside_and_zero_outside():
    image = np.full((30, 40, 3), 77.0)
    n, side = 20, 80.0
    crop = _crop((20.0, 15.0), side, n)  # the frame fills the middle of the crop
    out = frames.warp_to_crop(image, crop, n)
    full_from_crop = _full_from_crop(crop)
    step = side / n
    reach = 4 * 0.4 * step + 1.0  # blur support + bilinear neighbourhood, source pixels
    rows, cols = np.mgrid[0:n, 0:n]
    u = full_from_crop[0, 0] * cols + full_from_crop[0, 2]
    v = full_from_crop[1, 1] * rows + full_from_crop[1, 2]
    inside = (u - reach >= 0) & (u + reach <= 39) & (v - reach >= 0) & (v + reach <= 29)
    outside = (u + reach < -0.5) | (u - reach > 39.5) | (v + reach < -0.5) | (v - reach > 29.5)
    assert inside.sum() > 0 and outside.sum() > 0
    np.testing.assert_allclose(out[inside], 77.0, rtol=1e-5)
    assert np.all(out[outside] == 0.0)


@pytest.mark.parametrize("side, n", [(10.0, 37), (50.0, 20)])
def test_single_bright_pixel_lands_where_the_affine_says(side, n):
    image = np.zeros((60, 70, 1))
    image[23, 41] = 1000.0  # row 23, column 41: (u, v) = (41, 23)
    crop = _crop((38.3, 27.1), side, n)
    out = frames.warp_to_crop(image, crop, n)[..., 0]
    expected_uv = np.asarray(geometry.apply_affine(crop, np.array([[41.0, 23.0]])))[0]
    row, col = np.unravel_index(out.argmax(), out.shape)
    np.testing.assert_array_equal((col, row), np.rint(expected_uv))
    rows, cols = np.mgrid[0:n, 0:n]
    centroid_uv = np.array([(out * cols).sum(), (out * rows).sum()]) / out.sum()
    np.testing.assert_allclose(centroid_uv, expected_uv, atol=0.1)
    # Area-like: the mass is conserved up to the crop's pixel area.
    np.testing.assert_allclose(out.sum(), 1000.0 * (n / side) ** 2, rtol=0.05)


def test_mask_bbox_matches_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(20):
        mask = rng.uniform(size=(13, 17)) * (rng.uniform(size=(13, 17)) < 0.1)
        expected = None
        for i in range(13):
            for j in range(17):
                if mask[i, j] > 0.5:
                    box = (j - 0.5, i - 0.5, j + 0.5, i + 0.5)
                    expected = box if expected is None else (
                            min(expected[0], box[0]), min(expected[1], box[1]),
                            max(expected[2], box[2]), max(expected[3], box[3]))
        got = frames.mask_bbox(mask)
        if expected is None:
            assert got is None, trial
        else:
            np.testing.assert_array_equal(got, expected)
    assert frames.mask_bbox(np.zeros((5, 6))) is None
    assert frames.mask_bbox(np.full((5, 6), 0.5)) is None  # strictly above the threshold


@pytest.mark.parametrize("bbox, n, margin", [((10.0, 20.0, 50.0, 120.0), 32, 0.15),
                                             ((-3.5, 4.5, 60.5, 9.5), 17, 0.0),
                                             ((5.0, 5.0, 5.0, 5.0), 8, 0.2)])
def test_crop_from_mask_bbox_keeps_the_box_inside_with_the_margin(bbox, n, margin):
    crop = frames.crop_from_mask_bbox(bbox, n, margin)
    u_min, v_min, u_max, v_max = bbox
    corners = np.array([[u_min, v_min], [u_max, v_max]])
    (cu0, cv0), (cu1, cv1) = np.asarray(geometry.apply_affine(crop, corners))
    long_side = max(u_max - u_min, v_max - v_min, 1.0)
    border = n * margin / (1 + 2 * margin)  # crop pixels between the box and the crop's edge
    # The crop spans [-0.5, n - 0.5]; the box is centred, its longer side exactly inset.
    # (geometry.crop_affine computes in float32.)
    np.testing.assert_allclose([(cu0 + cu1) / 2, (cv0 + cv1) / 2], [(n - 1) / 2] * 2, atol=1e-4)
    assert min(cu0, cv0) >= -0.5 + border - 1e-4 and max(cu1, cv1) <= n - 0.5 - border + 1e-4
    extent = max(cu1 - cu0, cv1 - cv0)
    np.testing.assert_allclose(extent, n * (max(u_max - u_min, v_max - v_min) / long_side)
                               / (1 + 2 * margin), rtol=1e-5)
    np.testing.assert_allclose(crop[0, 0], crop[1, 1])
    assert crop[0, 1] == crop[1, 0] == 0.0


def _person_frame(height=60, width=80):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.float32)
    rows, cols = np.mgrid[0:height, 0:width]
    mask[((cols - 30) / 6.0) ** 2 + ((rows - 28) / 20.0) ** 2 <= 1] = 1.0
    return image, mask


def test_crop_view_outputs():
    image, mask = _person_frame()
    n = 24
    view = frames.crop_view(image, mask, n, source="clip/0001")
    decoded_image = np.asarray(Image.open(io.BytesIO(view["image"])))
    decoded_mask = np.asarray(Image.open(io.BytesIO(view["mask"])))
    assert decoded_image.shape == (n, n, 3) and decoded_image.dtype == np.uint8
    assert decoded_mask.shape == (n, n) and decoded_mask.dtype == np.uint8
    assert view["weight"].shape == (n, n) and view["weight"].dtype == np.float16
    assert view["crop"].shape == (2, 3) and view["crop"].dtype == np.float32
    np.testing.assert_allclose(view["crop"], frames.crop_from_mask_bbox(frames.mask_bbox(mask), n),
                               rtol=1e-6)
    np.testing.assert_allclose(view["weight"], geodesic.weight_map(decoded_mask / 255.0),
                               rtol=2e-3, atol=1e-2)
    # The ellipse's centre lands mid-crop, inside the stored mask.
    centre = np.rint(geometry.apply_affine(view["crop"].astype(np.float64),
                                           np.array([[30.0, 28.0]]))[0]).astype(int)
    assert decoded_mask[centre[1], centre[0]] == 255
    stacked = frames.stack_views([view, view])
    assert stacked["weight"].shape == (2, n, n) and stacked["crop"].shape == (2, 2, 3)
    assert stacked["image"] == [view["image"]] * 2


def test_crop_view_rejects_bad_masks_naming_the_source():
    image, mask = _person_frame()
    with pytest.raises(frames.BadInput, match=r"clip/0007.*80×60"):
        frames.crop_view(image, mask[:, :70], 16, source="clip/0007")
    with pytest.raises(frames.BadInput, match=r"clip/0008.*empty"):
        frames.crop_view(image, np.zeros_like(mask), 16, source="clip/0008")


def test_skips_policy():
    error = frames.BadInput("a.png: broken")
    with pytest.raises(frames.BadInput, match="a.png"):
        frames.Skips("error", "test")(error, "broken")
    skips = frames.Skips("skip", "test")
    skips(error, "broken")
    skips(error, "broken")
    skips(frames.BadInput("b.png: empty"), "empty")
    assert skips.counts == {"broken": 2, "empty": 1}
    skips.report("train")
    with pytest.raises(ValueError, match="on_bad_input"):
        frames.Skips("ignore", "test")
    assert issubclass(frames.BadInput, ValueError)


def test_features_shapes():
    features = frames.features(3, 16)
    shapes = {key: features[key].shape for key in
              ("image", "mask", "weight", "intrinsics", "extrinsics", "crop", "distortion",
               "joints_world")}
    assert shapes == {"image": (3, 16, 16, 3), "mask": (3, 16, 16, 1), "weight": (3, 16, 16),
                      "intrinsics": (3, 3, 3), "extrinsics": (3, 3, 4), "crop": (3, 2, 3),
                      "distortion": (3, 5), "joints_world": (skeleton.NUM_JOINTS, 3)}
    assert features["weight"].np_dtype == np.float16
    assert features["joints_world"].np_dtype == np.float32
    assert set(features["meta"].keys()) == {"subject", "action", "frame", "camera"}
    assert features["meta"]["camera"].shape == (3,)


def test_read_image_errors(tmp_path):
    with pytest.raises(frames.BadInput, match="no such image file"):
        frames.read_image(tmp_path / "img_000001.jpg")
    rng = np.random.default_rng(3)
    source = tmp_path / "img.jpg"
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(source)
    data = source.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 3])
    with pytest.raises(frames.BadInput, match="cut.jpg: cannot be decoded"):
        frames.read_image(tmp_path / "cut.jpg")
    assert frames.read_image(source).shape == (128, 128, 3)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.array([[0, 51, 255]], np.uint8)).save(grey)
    np.testing.assert_allclose(frames.read_mask(grey), [[0.0, 0.2, 1.0]], atol=1e-6)
