"""A procedural capsule body dressed over the 17-joint skeleton (DESIGN §12, synthetic set).

The body is a fixed list of capsules (a segment with a radius): one per leg and arm segment,
feet and hands extending the shin and forearm, a trunk of six overlapping capsules (hips,
belly, chest, two flanks, shoulder girdle), a neck, a head and a hair cap. Bone lengths come
from the motion-capture joints; `sample_body` draws only what the joints do not fix: limb and
trunk thickness, head size, foot and hand length, and appearance (clothing, skin and hair
colours, sleeve and trouser length, fabric stripes). Everything is the same on the left and
the right, so a silhouette or an image never tells which limb is the left one.

Units: millimetres; world frame Z up (the Human3.6M frame). NumPy float64 throughout.
"""

import dataclasses

import numpy as np

# Part ids: index into `BodyShape.colors_Px3` and `BodyShape.stripes_Px3`.
SKIN, HAIR, UPPER, LOWER, SHOES = 0, 1, 2, 3, 4
NUM_PARTS = 5
PART_NAMES = ("skin", "hair", "upper_clothing", "lower_clothing", "shoes")

# Capsule names in the order `capsules` returns them (left/right pairs adjacent).
CAPSULE_NAMES = (
    "r_thigh", "l_thigh", "r_shin", "l_shin", "r_foot", "l_foot",
    "r_upper_arm", "l_upper_arm", "r_forearm", "l_forearm", "r_hand", "l_hand",
    "hips", "belly", "chest", "r_flank", "l_flank", "shoulders",
    "neck", "head", "hair",
)
NUM_CAPSULES = len(CAPSULE_NAMES)

# Joint indices (maskpose_jax.skeleton order).
_PELVIS, _R_HIP, _R_KNEE, _R_ANKLE, _L_HIP, _L_KNEE, _L_ANKLE = 0, 1, 2, 3, 4, 5, 6
_SPINE, _THORAX, _NECK, _HEAD = 7, 8, 9, 10
_L_SHOULDER, _L_ELBOW, _L_WRIST, _R_SHOULDER, _R_ELBOW, _R_WRIST = 11, 12, 13, 14, 15, 16

# Height of the ankle joint above the sole (the value `motion` grounds clips with).
_ANKLE_HEIGHT_MM = 80.0

_SKIN_TONES = np.array([[0.95, 0.80, 0.69], [0.87, 0.68, 0.55], [0.76, 0.57, 0.42],
                        [0.60, 0.42, 0.29], [0.43, 0.29, 0.20], [0.30, 0.20, 0.14]])
_HAIR_COLORS = np.array([[0.08, 0.06, 0.05], [0.25, 0.16, 0.09], [0.45, 0.30, 0.16],
                         [0.80, 0.66, 0.42], [0.60, 0.60, 0.58], [0.55, 0.22, 0.10]])


@dataclasses.dataclass(frozen=True)
class BodyShape:
    """One subject's thickness and appearance (bone lengths come from the joints).

    Attributes:
        thigh_radius, shin_radius, upper_arm_radius, forearm_radius: limb radii, mm.
        hand_radius, hand_length: hand capsule radius and wrist-to-fingertip length, mm.
        foot_radius, foot_length: shoe capsule radius and heel-to-toe length, mm.
        hips_radius, belly_radius, chest_radius, flank_radius, shoulder_radius, neck_radius:
          trunk capsule radii, mm.
        head_radius: mm; hair_thickness: how far the hair cap stands off the scalp, mm.
        long_sleeves: forearms wear the upper clothing (else bare skin).
        long_trousers: shins wear the lower clothing (else bare skin).
        colors_Px3: RGB albedo in [0, 1] per part id (SKIN, HAIR, UPPER, LOWER, SHOES).
        stripes_Px3: per part (amplitude, period mm, phase rad) of a fabric stripe pattern
          along each capsule's axis, multiplying the albedo by 1 + amplitude * sin(...).
    """

    thigh_radius: float
    shin_radius: float
    upper_arm_radius: float
    forearm_radius: float
    hand_radius: float
    hand_length: float
    foot_radius: float
    foot_length: float
    hips_radius: float
    belly_radius: float
    chest_radius: float
    flank_radius: float
    shoulder_radius: float
    neck_radius: float
    head_radius: float
    hair_thickness: float
    long_sleeves: bool
    long_trousers: bool
    colors_Px3: np.ndarray
    stripes_Px3: np.ndarray


def _clothing_color(rng):
    """A saturated or muted garment colour, RGB in [0, 1]."""
    hue = rng.uniform(0.0, 1.0)
    saturation = rng.choice([rng.uniform(0.0, 0.15), rng.uniform(0.3, 0.9)])
    value = rng.uniform(0.15, 0.95)
    channel = (hue * 6.0 + np.array([0.0, 4.0, 2.0])) % 6.0
    pure = np.clip(np.abs(channel - 3.0) - 1.0, 0.0, 1.0)
    return value * (1.0 - saturation + saturation * pure)


def sample_body(rng):
    """Draws one subject's body thickness and appearance.

    A global build factor (slim to heavy) scales every radius; the trunk also gets its own hip
    and chest factors, and each limb a small jitter. Colours: skin tone from a light-to-dark
    palette (with jitter), hair from a natural palette, upper/lower clothing and shoes as random
    garment colours; left and right always share them.

    Args:
        rng: a `numpy.random.Generator`.

    Returns:
        `BodyShape` of a plausible adult.
    """
    build = rng.uniform(0.85, 1.2)
    hips, chest = rng.uniform(0.9, 1.12, size=2)
    jitter = lambda: build * rng.uniform(0.92, 1.08)
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.93, 1.05, size=3)
    hair = _HAIR_COLORS[rng.integers(len(_HAIR_COLORS))] * rng.uniform(0.9, 1.1, size=3)
    colors_Px3 = np.stack([skin, hair, _clothing_color(rng), _clothing_color(rng),
                           _clothing_color(rng)])
    stripes_Px3 = np.stack([
        np.array([0.0, 100.0, 0.0]), np.array([0.06, 15.0, 0.0]),
        np.array([rng.choice([0.03, rng.uniform(0.1, 0.25)]), rng.uniform(20.0, 90.0),
                  rng.uniform(0.0, 2 * np.pi)]),
        np.array([rng.uniform(0.02, 0.1), rng.uniform(10.0, 40.0), rng.uniform(0.0, 2 * np.pi)]),
        np.array([0.05, 30.0, 0.0]),
    ])
    return BodyShape(
        thigh_radius=68.0 * jitter(), shin_radius=50.0 * jitter(),
        upper_arm_radius=43.0 * jitter(), forearm_radius=35.0 * jitter(),
        hand_radius=28.0 * build, hand_length=rng.uniform(160.0, 195.0),
        foot_radius=rng.uniform(36.0, 44.0), foot_length=rng.uniform(235.0, 285.0),
        hips_radius=92.0 * build * hips, belly_radius=100.0 * build * rng.uniform(0.9, 1.15),
        chest_radius=110.0 * build * chest, flank_radius=72.0 * build * chest,
        shoulder_radius=55.0 * build, neck_radius=48.0 * jitter(),
        head_radius=rng.uniform(80.0, 95.0), hair_thickness=rng.uniform(3.0, 18.0),
        long_sleeves=bool(rng.uniform() < 0.6), long_trousers=bool(rng.uniform() < 0.75),
        colors_Px3=np.clip(colors_Px3, 0.0, 1.0), stripes_Px3=stripes_Px3,
    )


def _unit(v_3, fallback_3):
    norm = np.linalg.norm(v_3)
    return v_3 / norm if norm > 1e-6 else np.asarray(fallback_3, np.float64)


def _facing_direction(joints_Jx3):
    """Unit vector the torso faces, world frame: up x right (person facing +Y has right +X)."""
    right_3 = (joints_Jx3[_R_HIP] - joints_Jx3[_L_HIP]
               + joints_Jx3[_R_SHOULDER] - joints_Jx3[_L_SHOULDER])
    up_3 = joints_Jx3[_THORAX] - joints_Jx3[_PELVIS]
    return _unit(np.cross(up_3, right_3), (0.0, 1.0, 0.0))


def _foot(knee_3, ankle_3, forward_3, body):
    """Shoe capsule: from behind the ankle to the toes, perpendicular to the shin, its sole
    `_ANKLE_HEIGHT_MM` below the ankle joint."""
    shin_3 = _unit(ankle_3 - knee_3, (0.0, 0.0, -1.0))
    toe_dir_3 = _unit(forward_3 - (forward_3 @ shin_3) * shin_3, forward_3)
    base_3 = ankle_3 + (_ANKLE_HEIGHT_MM - body.foot_radius) * shin_3
    heel_3 = base_3 - (0.22 * body.foot_length - body.foot_radius) * toe_dir_3
    toe_3 = base_3 + (0.78 * body.foot_length - body.foot_radius) * toe_dir_3
    return heel_3, toe_3


def _hand(elbow_3, wrist_3, body):
    forearm_3 = _unit(wrist_3 - elbow_3, (0.0, 0.0, -1.0))
    return (wrist_3 + 0.3 * body.hand_radius * forearm_3,
            wrist_3 + (body.hand_length - body.hand_radius) * forearm_3)


def capsules(joints_world_Jx3, body):
    """Places the body's capsules on one pose.

    Args:
        joints_world_Jx3: the 17 joints (skeleton order), world frame, mm.
        body: `BodyShape`.

    Returns:
        (start_Cx3, end_Cx3, radius_C, part_C): capsule segment end points (world, mm), radii
        (mm) and integer part ids, C = NUM_CAPSULES, in `CAPSULE_NAMES` order.
    """
    j = np.asarray(joints_world_Jx3, np.float64)
    lerp = lambda a, b, w: (1.0 - w) * a + w * b
    forward_3 = _facing_direction(j)
    shin_part = LOWER if body.long_trousers else SKIN
    forearm_part = UPPER if body.long_sleeves else SKIN

    rows = [
        (j[_R_HIP], j[_R_KNEE], body.thigh_radius, LOWER),
        (j[_L_HIP], j[_L_KNEE], body.thigh_radius, LOWER),
        (j[_R_KNEE], j[_R_ANKLE], body.shin_radius, shin_part),
        (j[_L_KNEE], j[_L_ANKLE], body.shin_radius, shin_part),
        (*_foot(j[_R_KNEE], j[_R_ANKLE], forward_3, body), body.foot_radius, SHOES),
        (*_foot(j[_L_KNEE], j[_L_ANKLE], forward_3, body), body.foot_radius, SHOES),
        (j[_R_SHOULDER], j[_R_ELBOW], body.upper_arm_radius, UPPER),
        (j[_L_SHOULDER], j[_L_ELBOW], body.upper_arm_radius, UPPER),
        (j[_R_ELBOW], j[_R_WRIST], body.forearm_radius, forearm_part),
        (j[_L_ELBOW], j[_L_WRIST], body.forearm_radius, forearm_part),
        (*_hand(j[_R_ELBOW], j[_R_WRIST], body), body.hand_radius, SKIN),
        (*_hand(j[_L_ELBOW], j[_L_WRIST], body), body.hand_radius, SKIN),
    ]

    pelvis, spine, thorax = j[_PELVIS], j[_SPINE], j[_THORAX]
    # Hip joints sit inside the pelvis: pull the hip capsule's ends inwards.
    rows.append((lerp(pelvis, j[_R_HIP], 0.7), lerp(pelvis, j[_L_HIP], 0.7),
                 body.hips_radius, LOWER))
    rows.append((lerp(pelvis, spine, 0.35), spine, body.belly_radius, UPPER))
    rows.append((spine, lerp(spine, thorax, 0.8), body.chest_radius, UPPER))
    for hip, shoulder in ((_R_HIP, _R_SHOULDER), (_L_HIP, _L_SHOULDER)):
        bottom = lerp(pelvis, j[hip], 0.55) + 0.4 * (spine - pelvis)
        top = lerp(thorax, j[shoulder], 0.55) + 0.3 * (spine - thorax)
        rows.append((bottom, top, body.flank_radius, UPPER))
    rows.append((j[_R_SHOULDER], j[_L_SHOULDER], body.shoulder_radius, UPPER))

    rows.append((thorax, lerp(thorax, j[_NECK], 0.7), body.neck_radius, SKIN))
    head_axis_3 = _unit(j[_HEAD] - j[_NECK], thorax - spine)
    crown_3 = j[_HEAD] - (body.head_radius - 15.0) * head_axis_3
    rows.append((j[_NECK], crown_3, body.head_radius, SKIN))
    # Hair: a slightly larger sphere shifted up and back, so the face stays skin.
    hair_center_3 = crown_3 + 0.5 * body.hair_thickness * head_axis_3 - 15.0 * forward_3
    rows.append((hair_center_3, hair_center_3 - 0.25 * body.head_radius * head_axis_3,
                 body.head_radius + 0.5 * body.hair_thickness, HAIR))

    start_Cx3 = np.stack([r[0] for r in rows])
    end_Cx3 = np.stack([r[1] for r in rows])
    radius_C = np.array([r[2] for r in rows], np.float64)
    part_C = np.array([r[3] for r in rows], np.int32)
    return start_Cx3, end_Cx3, radius_C, part_C


def standing_joints(scale=1.0):
    """A relaxed standing pose facing +Y (right side towards +X), soles near the floor Z = 0.

    For tests and previews. Bone lengths are those of a Human3.6M subject (about 1.7 m tall).

    Args:
        scale: multiplies every coordinate.

    Returns:
        17x3 joints (skeleton order), world frame, mm.
    """
    joints_Jx3 = np.array([
        [0.0, 0.0, 930.0],                                              # pelvis
        [130.0, 0.0, 930.0], [135.0, 10.0, 490.0], [140.0, 0.0, 80.0],   # right leg
        [-130.0, 0.0, 930.0], [-135.0, 10.0, 490.0], [-140.0, 0.0, 80.0],
        [0.0, -10.0, 1160.0], [0.0, 0.0, 1415.0],                        # spine, thorax
        [0.0, 40.0, 1530.0], [0.0, 10.0, 1640.0],                        # neck/nose, head
        [-150.0, 0.0, 1400.0], [-230.0, 10.0, 1130.0], [-270.0, 60.0, 895.0],   # left arm
        [150.0, 0.0, 1400.0], [230.0, 10.0, 1130.0], [270.0, 60.0, 895.0],      # right arm
    ])
    return joints_Jx3 * scale
