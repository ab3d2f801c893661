"""The embedded default dataset: real mocap poses, a procedural capsule body, rendered multi-view crops."""
