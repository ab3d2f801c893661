"""NumPy float64 references shared by several test files (independent of the library code)."""

import numpy as np


def project_reference(points_world, intrinsics, extrinsics, distortion):
    """float64 per-point projection, distortion written in OpenCV's (k1, k2, p1, p2, k3) form."""
    uvs = []
    for point in points_world:
        x_c, y_c, z_c = extrinsics[:, :3] @ point + extrinsics[:, 3]
        x, y = x_c / z_c, y_c / z_c
        k1, k2, k3, p1, p2 = distortion
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
        x, y = (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)
        uvs.append((intrinsics[0, 0] * x + intrinsics[0, 1] * y + intrinsics[0, 2],
                    intrinsics[1, 1] * y + intrinsics[1, 2]))
    return np.array(uvs)


def undistort_px_reference(uv_Nx2, intrinsics, distortion, iterations=100):
    """float64 pixels through the lens -> pinhole pixels of the same rays, by OpenCV's fixed-point
    iteration x = (x_d - tangential(x)) / radial(x) (small distortions)."""
    k1, k2, k3, p1, p2 = distortion
    y_d = (uv_Nx2[:, 1] - intrinsics[1, 2]) / intrinsics[1, 1]
    x_d = (uv_Nx2[:, 0] - intrinsics[0, 2] - intrinsics[0, 1] * y_d) / intrinsics[0, 0]
    x, y = x_d.copy(), y_d.copy()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
        x = (x_d - (2 * p1 * x * y + p2 * (r2 + 2 * x * x))) / radial
        y = (y_d - (p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)) / radial
    return np.stack([intrinsics[0, 0] * x + intrinsics[0, 1] * y + intrinsics[0, 2],
                     intrinsics[1, 1] * y + intrinsics[1, 2]], axis=-1)
