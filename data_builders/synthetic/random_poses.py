"""Random poses of the procedural body and their silhouettes: shape-prior data without mocap.

`random_pose` draws joint angles uniformly within generous human ranges (trunk lean and twist,
hip flexion and abduction, knee flexion, a free upper arm with its twist, elbow flexion, head
turn) and poses `body.standing_joints`' bone lengths by forward kinematics; no motion capture
and no split of any dataset is read. `silhouettes` renders such poses, each on a procedural
subject of its own (seeds apart from the dataset's subjects), in a Human3.6M rig, with the
dataset's renderer and crops: the skeleton -> silhouette pairs that pre-train the Physique
network (maskpose_jax/physique_prior.py).
"""

from concurrent import futures

import numpy as np

from data_builders import frames
from data_builders.synthetic import body as body_lib
from data_builders.synthetic import motion as motion_lib
from data_builders.synthetic import raycast
from data_builders.synthetic import rig as rig_lib
from maskpose_jax import skeleton

# Joint-angle ranges, degrees (uniform). The body faces +Y, its right side towards +X, Z up.
TRUNK_PITCH = (-15.0, 60.0)     # forward lean
TRUNK_ROLL = (-20.0, 20.0)
TRUNK_TWIST = (-35.0, 35.0)
HIP_FLEXION = (-25.0, 110.0)    # thigh forward
HIP_ABDUCTION = (-10.0, 45.0)   # thigh outward
KNEE_FLEXION = (0.0, 140.0)
ARM_ELEVATION = (0.0, 170.0)    # upper arm away from hanging down, any direction
ARM_TWIST = (-60.0, 60.0)
ELBOW_FLEXION = (0.0, 145.0)
HEAD_TURN = (-40.0, 40.0)
HEAD_NOD = (-20.0, 30.0)
# Seed streams of the pairs (the dataset's subjects are [seed, 7, k], its bones [seed, 11, k]).
_POSE_STREAM, _SUBJECT_STREAM = 23, 29
CAPTURE_AREA_RADIUS_MM = 1000.0

_DOWN = np.array([0.0, 0.0, -1.0])


def _rot(axis, degrees):
    """Rotation matrix about a coordinate axis ("x", "y" or "z")."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _angle(rng, bounds):
    return rng.uniform(*bounds)


def random_pose(rng) -> np.ndarray:
    """One random pose with `body.standing_joints`' bone lengths (17x3, world frame, mm).

    Every bone keeps its length; left and right limbs are drawn from the same ranges (mirrored),
    so the pose distribution is left/right symmetric.
    """
    stand = body_lib.standing_joints()
    length = {(p, j): np.linalg.norm(stand[j] - stand[p]) for p, j in skeleton.LIMBS}
    out = np.zeros_like(stand)
    out[0] = stand[0]
    trunk = (_rot("z", _angle(rng, TRUNK_TWIST)) @ _rot("y", _angle(rng, TRUNK_ROLL))
             @ _rot("x", _angle(rng, TRUNK_PITCH)))
    for p, j in ((0, 7), (7, 8)):           # spine and thorax lean with the trunk
        out[j] = out[p] + trunk @ (stand[j] - stand[p])
    head = trunk @ _rot("z", _angle(rng, HEAD_TURN)) @ _rot("x", _angle(rng, HEAD_NOD))
    for p, j in ((8, 9), (9, 10)):
        out[j] = out[p] + head @ (stand[j] - stand[p])
    for side, (hip, knee, ankle) in ((1.0, (1, 2, 3)), (-1.0, (4, 5, 6))):
        out[hip] = out[0] + stand[hip] - stand[0]
        # Hip flexion turns the hanging thigh towards +Y, abduction away from the midline.
        thigh = (_rot("y", side * -_angle(rng, HIP_ABDUCTION))
                 @ _rot("x", _angle(rng, HIP_FLEXION)))
        out[knee] = out[hip] + length[(hip, knee)] * (thigh @ _DOWN)
        shin = thigh @ _rot("x", -_angle(rng, KNEE_FLEXION))     # the knee bends backwards
        out[ankle] = out[knee] + length[(knee, ankle)] * (shin @ _DOWN)
    for side, (shoulder, elbow, wrist) in ((-1.0, (11, 12, 13)), (1.0, (14, 15, 16))):
        out[shoulder] = out[8] + trunk @ (stand[shoulder] - stand[8])
        azimuth = rng.uniform(0.0, 360.0)   # the direction the arm is raised in
        arm = (trunk @ _rot("z", azimuth) @ _rot("x", _angle(rng, ARM_ELEVATION))
               @ _rot("z", -azimuth) @ _rot("z", _angle(rng, ARM_TWIST)))
        out[elbow] = out[shoulder] + length[(shoulder, elbow)] * (arm @ _DOWN)
        forearm = arm @ _rot("x", _angle(rng, ELBOW_FLEXION))   # the forearm bends forwards
        out[wrist] = out[elbow] + length[(elbow, wrist)] * (forearm @ _DOWN)
    # Above the floor: the lowest joint 80 mm up, as the ankles of a standing pose.
    out[:, 2] += 80.0 - out[:, 2].min()
    return out


def _pair(seed, index, num_views, image_size):
    """Example `index`: its own seed, pose, subject, bone lengths, rig and placement; None when
    the body leaves a view."""
    rng = np.random.default_rng([seed, _POSE_STREAM, index])
    pose = motion_lib.retarget(random_pose(rng)[None], motion_lib.sample_bone_lengths(rng))[0]
    body = body_lib.sample_body(np.random.default_rng([seed, _SUBJECT_STREAM, index]))
    rig = rig_lib.sample_h36m_rig(rng, num_views)
    placed, _, _ = rig_lib.place_person(pose, rng, CAPTURE_AREA_RADIUS_MM, rig=rig)
    if not rig_lib.in_view(placed[None], rig).all():
        return None
    rendered = raycast.render_views(body_lib.capsules(placed, body), body,
                                    rig_lib.sample_scene(rng), rig, image_size, 2,
                                    frames.CROP_MARGIN)
    if rendered is None:
        return None
    masks, _, crops = rendered
    return dict(mask=masks.astype(np.float32), crop=crops.astype(np.float32),
                intrinsics=np.stack([c.intrinsics for c in rig]).astype(np.float32),
                extrinsics=np.stack([c.extrinsics for c in rig]).astype(np.float32),
                joints_world=placed.astype(np.float32))


def silhouettes(seed: int, count: int, num_views: int = 4, image_size: int = 64,
                progress=None) -> dict:
    """`count` random poses rendered in `num_views` views: stacked arrays of the pairs.

    Args:
        seed: seeds every example (each from [seed, stream, index]: the same arrays whatever
          the thread timing).
        count: examples wanted (examples whose body leaves a view are skipped and replaced).
        num_views: cameras of a Human3.6M rig per example (1..4).
        image_size: crop side N, pixels.
        progress: called with the number of examples made so far, every 256 (or None).

    Returns:
        dict of float32 arrays: mask [count, V, N, N], crop [count, V, 2, 3], intrinsics
        [count, V, 3, 3], extrinsics [count, V, 3, 4], joints_world [count, 17, 3] (mm).
    """
    if count < 1 or not 1 <= num_views <= 4 or image_size < 8:
        raise ValueError(f"silhouettes needs count >= 1, num_views in 1..4 and image_size >= 8, "
                         f"got {count}, {num_views}, {image_size}")
    made, index = [], 0
    # The renderer (JAX) releases the GIL: two threads use two cores.
    with futures.ThreadPoolExecutor(max_workers=2) as pool:
        while len(made) < count:
            wanted = count - len(made)
            for pair in pool.map(lambda i: _pair(seed, i, num_views, image_size),
                                 range(index, index + wanted)):
                if pair is not None:
                    made.append(pair)
                    if progress is not None and len(made) % 256 == 0:
                        progress(len(made))
            index += wanted
    return {key: np.stack([pair[key] for pair in made]) for key in made[0]}
