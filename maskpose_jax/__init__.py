"""maskpose_jax: unsupervised 3D human pose from foreground masks (Mask as Supervision) in JAX."""

__version__ = "0.1.0"
