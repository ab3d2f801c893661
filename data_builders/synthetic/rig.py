"""The capture set of the synthetic dataset: camera rigs, person placement, room and light.

Cameras are `data_builders.cameras.Camera` (K in pixels, world -> camera [R|t] in mm). The
renderer is a pinhole, so every rig here has zero lens distortion. World frame: Z up, the floor
at Z = 0, the capture area around the world origin (as in Human3.6M).

The room (`Scene`, `room_color`): a floor plane Z = 0 with a rotated checker, a cylindrical wall
around the origin with panels and a skirting board, both modulated by smooth sinusoidal noise,
and a soft shadow under the person; one directional light plus ambient for the body.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from data_builders import cameras as cameras_lib
from maskpose_jax import geometry

_NUM_WAVES = 6
# The Human3.6M subjects whose calibrations the rigs use.
H36M_SUBJECTS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11")


def h36m_cameras_for(subject="S1"):
    """The 4 real Human3.6M cameras of one subject, as pinholes.

    Intrinsics and extrinsics are the real calibration (mm); the lens distortion is set to zero
    because the synthetic renderer casts pinhole rays.

    Args:
        subject: Human3.6M subject whose calibration to use, e.g. 'S1'.

    Returns:
        list of 4 `Camera`, in camera-id order.
    """
    return [cam._replace(distortion=np.zeros(5)) for cam in cameras_lib.h36m_rig(subject)]


def sample_h36m_rig(rng, num_views):
    """`num_views` of the 4 cameras of a random Human3.6M subject's calibration, in id order."""
    cameras = h36m_cameras_for(H36M_SUBJECTS[rng.integers(len(H36M_SUBJECTS))])
    return [cameras[i] for i in np.sort(rng.choice(len(cameras), size=num_views, replace=False))]


def ring_rig(count, radius_mm, height_mm, focal_px, image_size_px, target_height_mm=1000.0,
             start_angle=0.0):
    """Cameras evenly spaced on a horizontal circle around the origin, all aimed at one point.

    Args:
        count: number of cameras.
        radius_mm: circle radius (distance from the Z axis), mm.
        height_mm: camera height above the floor, mm.
        focal_px: focal length, pixels (square pixels, no skew).
        image_size_px: image side (square images), pixels; the principal point is the centre.
        target_height_mm: every camera looks at (0, 0, target_height_mm).
        start_angle: azimuth of the first camera, radians counter-clockwise from +X.

    Returns:
        list of `Camera` named 'ring0', 'ring1', ...
    """
    center_px = (image_size_px - 1) / 2.0
    intrinsics = np.array([[focal_px, 0.0, center_px], [0.0, focal_px, center_px],
                           [0.0, 0.0, 1.0]])
    target_3 = np.array([0.0, 0.0, target_height_mm])
    rig = []
    for k in range(count):
        angle = start_angle + 2.0 * np.pi * k / count
        center_3 = np.array([radius_mm * np.cos(angle), radius_mm * np.sin(angle), height_mm])
        rot_3x3 = np.asarray(geometry.look_at_extrinsics(center_3, target_3), np.float64)[:, :3]
        # look_at_extrinsics runs in float32: snap R back onto a rotation, t = -R c in float64.
        u_3x3, _, vt_3x3 = np.linalg.svd(rot_3x3)
        rot_3x3 = u_3x3 @ vt_3x3
        extrinsics = np.concatenate([rot_3x3, (-rot_3x3 @ center_3)[:, None]], axis=1)
        rig.append(cameras_lib.Camera(
            intrinsics=intrinsics, extrinsics=extrinsics, distortion=np.zeros(5),
            width=int(image_size_px), height=int(image_size_px), name=f"ring{k}",
            subject="ring", camera_id=f"ring{k}"))
    return rig


def in_view(joints_world_TxJx3, rig, margin_mm=250.0):
    """Whether every joint of each frame is seen by every camera, with room for the body.

    A joint counts as seen when it is in front of the camera and projects inside the image
    by at least the image size of `margin_mm` at its depth (f * margin / Z pixels), so the
    flesh, hands and feet around the joints stay in the image too.

    Args:
        joints_world_TxJx3: joints of T frames (or one Jx3 frame), world frame, mm.
        rig: list of `Camera`.
        margin_mm: body extent beyond the joints to keep inside the image, mm.

    Returns:
        bool array of shape (T,) (a scalar bool for one Jx3 frame).
    """
    joints_TxJx3 = np.asarray(joints_world_TxJx3, np.float64)
    single = joints_TxJx3.ndim == 2
    joints_TxJx3 = joints_TxJx3[None] if single else joints_TxJx3
    frames, num_joints = joints_TxJx3.shape[:2]
    points_Nx3 = joints_TxJx3.reshape(-1, 3)
    seen_N = np.ones(len(points_Nx3), bool)
    for cam in rig:
        cam_Nx3 = np.asarray(geometry.cam_from_world(points_Nx3, cam.extrinsics))
        depth_N = cam_Nx3[:, 2]
        front_N = depth_N > margin_mm
        uv_Nx2 = np.asarray(geometry.project_cam(
            np.where(front_N[:, None], cam_Nx3, [0.0, 0.0, 1.0]), cam.intrinsics))
        pad_N = cam.intrinsics[0, 0] * margin_mm / np.where(front_N, depth_N, 1.0)
        seen_N &= (front_N & (uv_Nx2[:, 0] - pad_N >= -0.5)
                   & (uv_Nx2[:, 0] + pad_N <= cam.width - 0.5)
                   & (uv_Nx2[:, 1] - pad_N >= -0.5) & (uv_Nx2[:, 1] + pad_N <= cam.height - 0.5))
    seen_T = seen_N.reshape(frames, num_joints).all(axis=1)
    return bool(seen_T[0]) if single else seen_T


def place_person(joints_world_TxJx3, rng, area_radius_mm, rig=None, margin_mm=250.0,
                 max_tries=32, pelvis=0):
    """Turns and moves a whole clip to a random spot of the capture area.

    One transform for the whole clip (so the motion stays intact; a single Jx3 frame is a clip
    of one): a yaw uniform in [0, 2 pi) about the vertical through the clip's mean pelvis
    position, then a floor translation putting that mean at a point uniform in the disc of
    radius `area_radius_mm` around the origin. Heights are unchanged. With a rig, placements are
    redrawn (up to `max_tries`) until every frame is `in_view` of every camera; if none is, the
    try with the most frames in view is returned, and `in_view` tells the caller which frames
    to keep (a clip that travels further than the cameras see can never fit whole).

    Args:
        joints_world_TxJx3: T frames (or one Jx3 frame) of joints, world frame, mm.
        rng: a `numpy.random.Generator`.
        area_radius_mm: radius of the capture area on the floor, mm.
        rig: optional list of `Camera` that must see the person.
        margin_mm: see `in_view`.
        max_tries: placements tried when a rig is given.
        pelvis: index of the joint whose mean floor position is the clip's centre.

    Returns:
        (placed joints, same shape as the input; yaw in radians; world offset (3,) in mm),
        placed = rotation_about_z(yaw) @ (joints - centre) + centre + offset.
    """
    joints = np.asarray(joints_world_TxJx3, np.float64)
    center_3 = np.zeros(3)
    center_3[:2] = joints.reshape(-1, joints.shape[-2], 3)[:, pelvis, :2].mean(axis=0)
    best = None
    for _ in range(max_tries if rig else 1):
        yaw = rng.uniform(0.0, 2.0 * np.pi)
        radius, angle = area_radius_mm * np.sqrt(rng.uniform()), rng.uniform(0.0, 2.0 * np.pi)
        offset_3 = np.array([radius * np.cos(angle), radius * np.sin(angle), 0.0]) - center_3
        rot_3x3 = np.asarray(geometry.rotation_about_z(yaw), np.float64)
        placed = (joints - center_3) @ rot_3x3.T + center_3 + offset_3
        if not rig:
            return placed, yaw, offset_3
        count = int(np.sum(in_view(placed, rig, margin_mm)))
        if best is None or count > best[0]:
            best = (count, placed, yaw, offset_3)
        if count == np.prod(joints.shape[:-2], dtype=int):
            break
    return best[1:]


# The room and the light


@dataclasses.dataclass(frozen=True)
class Scene:
    """Per-example lighting and background (world frame, mm).

    Attributes:
        light_dir_3: unit vector pointing towards the (directional) light.
        ambient: share of light that is ambient, in [0, 1].
        floor_colors_2x3, wall_colors_2x3: RGB in [0, 1], the two tones of floor and wall.
        checker_mm, checker_angle, checker_contrast: floor checker cell size, rotation (rad)
          about Z, and contrast in [0, 1] (0 is a plain floor).
        wall_radius_mm: radius of the cylindrical wall around the world origin.
        panel_mm: width of the wall panels.
        waves_Kx5: smooth noise, per wave (kx, ky, kz in rad/mm, phase, amplitude).
        shadow: darkening of the floor under the person, in [0, 1).
        sensor_noise: std of the Gaussian pixel noise, in 0-255 units.
        seed: seeds the sensor noise (with the view index).
    """

    light_dir_3: np.ndarray
    ambient: float
    floor_colors_2x3: np.ndarray
    wall_colors_2x3: np.ndarray
    checker_mm: float
    checker_angle: float
    checker_contrast: float
    wall_radius_mm: float
    panel_mm: float
    waves_Kx5: np.ndarray
    shadow: float
    sensor_noise: float
    seed: int


def sample_scene(rng, wall_radius_mm=8000.0):
    """Draws lighting and a background for one example.

    Args:
        rng: a `numpy.random.Generator`.
        wall_radius_mm: radius of the room's wall; keep it beyond the cameras' reach of the
          person (the renderer shows the wall's far side, so cameras may stand outside it).

    Returns:
        `Scene`.
    """
    azimuth = rng.uniform(0.0, 2 * np.pi)
    elevation = rng.uniform(np.radians(25.0), np.radians(80.0))
    light_dir_3 = np.array([np.cos(elevation) * np.cos(azimuth),
                            np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    wavelength_K = np.exp(rng.uniform(np.log(150.0), np.log(2500.0), size=_NUM_WAVES))
    direction_Kx3 = rng.normal(size=(_NUM_WAVES, 3))
    direction_Kx3 /= np.linalg.norm(direction_Kx3, axis=1, keepdims=True)
    waves_Kx5 = np.concatenate([
        direction_Kx3 * (2 * np.pi / wavelength_K)[:, None],
        rng.uniform(0.0, 2 * np.pi, size=(_NUM_WAVES, 1)),
        rng.uniform(0.0, 0.08, size=(_NUM_WAVES, 1))], axis=1)
    return Scene(
        light_dir_3=light_dir_3, ambient=float(rng.uniform(0.3, 0.6)),
        floor_colors_2x3=rng.uniform(0.1, 0.9, size=(2, 3)),
        wall_colors_2x3=rng.uniform(0.1, 0.95, size=(2, 3)),
        checker_mm=float(rng.uniform(250.0, 900.0)),
        checker_angle=float(rng.uniform(0.0, np.pi / 2)),
        checker_contrast=float(rng.choice([0.0, rng.uniform(0.2, 1.0)])),
        wall_radius_mm=float(wall_radius_mm), panel_mm=float(rng.uniform(400.0, 2500.0)),
        waves_Kx5=waves_Kx5, shadow=float(rng.uniform(0.0, 0.5)),
        sensor_noise=float(rng.uniform(0.5, 4.0)), seed=int(rng.integers(2**31)),
    )


def scene_arrays(scene):
    """A `Scene` as a dict of jax arrays (float32; the seed uint32), to pass through `jit`."""
    arrays = {f.name: jnp.asarray(getattr(scene, f.name), jnp.float32)
              for f in dataclasses.fields(scene) if f.name != "seed"}
    arrays["seed"] = jnp.asarray(scene.seed, jnp.uint32)
    return arrays


def _noise(points_Rx3, waves_Kx5):
    phase_RxK = points_Rx3 @ waves_Kx5[:, :3].T + waves_Kx5[:, 3]
    return jnp.sum(waves_Kx5[:, 4] * jnp.sin(phase_RxK), axis=-1)


def room_color(origin_3, dir_Rx3, scene, person_xy_2):
    """Colour of the room seen along rays (jax.numpy, jit-friendly).

    Args:
        origin_3: the rays' origin (camera centre), world, mm.
        dir_Rx3: unit ray directions, world.
        scene: `scene_arrays(Scene)`.
        person_xy_2: floor position of the person (centre of the shadow), mm.

    Returns:
        Rx3 RGB, about [0, 1].
    """
    dz = dir_Rx3[:, 2]
    t_floor = jnp.where(dz < -1e-9, -origin_3[2] / jnp.where(dz < -1e-9, dz, -1.0), jnp.inf)
    t_floor = jnp.where(t_floor > 0.0, t_floor, jnp.inf)
    # Far intersection with the wall cylinder x^2 + y^2 = R^2.
    qa = jnp.maximum(jnp.sum(dir_Rx3[:, :2] ** 2, -1), 1e-12)
    qb = dir_Rx3[:, :2] @ origin_3[:2]
    qc = origin_3[:2] @ origin_3[:2] - scene["wall_radius_mm"] ** 2
    disc = qb * qb - qa * qc
    t_wall = jnp.where(disc > 0.0, (-qb + jnp.sqrt(jnp.maximum(disc, 0.0))) / qa, jnp.inf)
    on_floor = t_floor < t_wall
    t_R = jnp.minimum(t_floor, t_wall)
    t_R = jnp.where(jnp.isfinite(t_R), t_R, 1e5)
    p_Rx3 = origin_3 + t_R[:, None] * dir_Rx3

    c, s = jnp.cos(scene["checker_angle"]), jnp.sin(scene["checker_angle"])
    cell_x = jnp.floor((c * p_Rx3[:, 0] + s * p_Rx3[:, 1]) / scene["checker_mm"])
    cell_y = jnp.floor((-s * p_Rx3[:, 0] + c * p_Rx3[:, 1]) / scene["checker_mm"])
    checker_R = jnp.mod(cell_x + cell_y, 2.0)
    floor_mix_R = 0.5 + scene["checker_contrast"] * (checker_R - 0.5)
    floor_Rx3 = (scene["floor_colors_2x3"][0] * (1.0 - floor_mix_R[:, None])
                 + scene["floor_colors_2x3"][1] * floor_mix_R[:, None])
    shadow_R = 1.0 - scene["shadow"] * jnp.exp(
        -jnp.sum((p_Rx3[:, :2] - person_xy_2) ** 2, -1) / (2 * 350.0**2))
    floor_Rx3 = floor_Rx3 * shadow_R[:, None]

    arc_R = jnp.arctan2(p_Rx3[:, 1], p_Rx3[:, 0]) * scene["wall_radius_mm"]
    panel_R = jnp.floor(arc_R / scene["panel_mm"])
    panel_mix_R = jnp.mod(panel_R * 0.618034, 1.0)         # golden-ratio steps: no repeats
    wall_Rx3 = (scene["wall_colors_2x3"][0] * (1.0 - panel_mix_R[:, None])
                + scene["wall_colors_2x3"][1] * panel_mix_R[:, None])
    wall_Rx3 = wall_Rx3 * jnp.where(p_Rx3[:, 2] < 120.0, 0.6, 1.0)[:, None]  # skirting board
    color_Rx3 = jnp.where(on_floor[:, None], floor_Rx3, wall_Rx3)
    return color_Rx3 * (1.0 + _noise(p_Rx3, scene["waves_Kx5"]))[:, None]
