"""The 17-joint Human3.6M skeleton (DESIGN §2): names, parents, drawing bones, left/right pairs.

Every table is a Python tuple so that it stays static under `jit`. Other datasets map their
joints into this order in their builders.
"""

JOINT_NAMES = (
    "pelvis",       # 0
    "r_hip",        # 1
    "r_knee",       # 2
    "r_ankle",      # 3
    "l_hip",        # 4
    "l_knee",       # 5
    "l_ankle",      # 6
    "spine",        # 7
    "thorax",       # 8
    "neck",         # 9  (neck/nose)
    "head",         # 10
    "l_shoulder",   # 11
    "l_elbow",      # 12
    "l_wrist",      # 13
    "r_shoulder",   # 14
    "r_elbow",      # 15
    "r_wrist",      # 16
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

PELVIS = 0
THORAX = 8

# Kinematic tree: PARENTS[j] is the parent of joint j (-1 for the root).
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

# The 16 parent -> child links.
LIMBS = tuple((p, j) for j, p in enumerate(PARENTS) if p >= 0)

# Links that fill the trunk in the drawn mask: spine -> each hip, spine -> each shoulder,
# pelvis -> each knee, each hip -> the shoulder on its own side.
TORSO_LINKS = ((7, 1), (7, 4), (7, 11), (7, 14), (0, 2), (0, 5), (1, 14), (4, 11))

# Segments drawn by the Skeleton Mask (DESIGN §3): 24 = 16 limbs + 8 torso links.
BONES = LIMBS + TORSO_LINKS
NUM_BONES = len(BONES)

# Upper arms and forearms are drawn with half the body width.
_THIN = frozenset({(11, 12), (12, 13), (14, 15), (15, 16)})
BONE_WIDTH_SCALES = tuple(0.5 if bone in _THIN else 1.0 for bone in BONES)

# Radius of every bone of BONES for a generic adult, mm: round anthropometric figures (thigh 70,
# shin 50, upper arm 45, forearm 35, head 85, trunk 80-105), the Physique Mask of
# `config.physique.kind = "body"` (a body drawn at its size in millimetres in every view).
_BONE_RADII_MM = {
    (0, 1): 90.0, (1, 2): 70.0, (2, 3): 50.0, (0, 4): 90.0, (4, 5): 70.0, (5, 6): 50.0,
    (0, 7): 100.0, (7, 8): 105.0, (8, 9): 50.0, (9, 10): 85.0,
    (8, 11): 55.0, (11, 12): 45.0, (12, 13): 35.0, (8, 14): 55.0, (14, 15): 45.0, (15, 16): 35.0,
    (7, 1): 85.0, (7, 4): 85.0, (7, 11): 80.0, (7, 14): 80.0, (0, 2): 60.0, (0, 5): 60.0,
    (1, 14): 70.0, (4, 11): 70.0,
}
BONE_RADII_MM = tuple(_BONE_RADII_MM[bone] for bone in BONES)
# The body also has hands and feet: points 17, 18 (left, right hand tips) and 19, 20 (right, left
# toes) that `fused.body_points` places from the joints, drawn as four more bones.
BODY_BONES = BONES + ((13, 17), (16, 18), (3, 19), (6, 20))
BODY_RADII_MM = BONE_RADII_MM + (40.0, 40.0, 45.0, 45.0)

# Left/right joint pairs, DESIGN §2 (the order inside a pair carries no meaning).
LR_PAIRS = ((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16))

# FLIP_PERMUTATION[j] is the joint that j becomes when left and right are exchanged.
FLIP_PERMUTATION = tuple(
    dict([(a, b) for a, b in LR_PAIRS] + [(b, a) for a, b in LR_PAIRS]).get(j, j)
    for j in range(NUM_JOINTS)
)

# A generic adult standing upright, world frame (mm, Z up, pelvis at the origin), facing +X, so
# the person's left is +Y. Hand-written Human3.6M-like proportions (thigh 450, shin 440, upper arm
# 280, forearm 250 mm), not a measurement of any dataset: the start of experiments/fit.py and the
# reference proportions of the anatomy prior.
STANDING_TEMPLATE_MM = (
    (0.0, 0.0, 0.0),                                                  # pelvis
    (0.0, -130.0, 0.0), (0.0, -130.0, -450.0), (0.0, -130.0, -890.0),  # right hip, knee, ankle
    (0.0, 130.0, 0.0), (0.0, 130.0, -450.0), (0.0, 130.0, -890.0),     # left hip, knee, ankle
    (0.0, 0.0, 230.0), (0.0, 0.0, 480.0), (60.0, 0.0, 590.0), (0.0, 0.0, 700.0),  # spine..head
    (0.0, 160.0, 450.0), (0.0, 180.0, 170.0), (0.0, 190.0, -80.0),     # left shoulder..wrist
    (0.0, -160.0, 450.0), (0.0, -180.0, 170.0), (0.0, -190.0, -80.0),  # right shoulder..wrist
)

# Mirrored limbs, ((parent, child), (mirror parent, mirror child)), for the symmetry loss.
SYMMETRIC_LIMBS = tuple(((PARENTS[a], a), (PARENTS[b], b)) for a, b in LR_PAIRS)

# A generic standing person facing the camera, in normalized crop coordinates (x right, y down;
# a crop from the mask's box with a 15% margin spans y in about [-0.77, 0.77]). Hand-written, the
# same for every example: the detector's optional spatial prior (`config.model.template`), a
# start that is not a point. Not a measurement of any dataset.
STANDING_TEMPLATE = (
    (0.0, 0.05),                                          # pelvis
    (-0.12, 0.05), (-0.12, 0.42), (-0.12, 0.75),          # right hip, knee, ankle
    (0.12, 0.05), (0.12, 0.42), (0.12, 0.75),             # left hip, knee, ankle
    (0.0, -0.25), (0.0, -0.48), (0.0, -0.6), (0.0, -0.72),  # spine, thorax, neck/nose, head
    (0.18, -0.46), (0.24, -0.18), (0.26, 0.08),           # left shoulder, elbow, wrist
    (-0.18, -0.46), (-0.24, -0.18), (-0.26, 0.08),        # right shoulder, elbow, wrist
)
