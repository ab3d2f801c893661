"""Byte-identical records for the same options, whichever process builds them.

tfds writes every example as a tf.Example, whose features are a protobuf map, and protobuf (upb)
writes a map's entries in the order of its hash table, seeded anew in every process: two builds
of the same examples wrote them in different bytes (the same fields, in another order).
`sort_map_entries()` makes tfds's serializer ask protobuf for its deterministic serialization
(map entries sorted by key); readers parse either order alike. Importing `data_builders` (which
every builder module does first) calls it, so every builder's records are reproducible.
"""

from tensorflow_datasets.core import example_serializer


def _serialize_example(self, example) -> bytes:
    return self.get_tf_example(example).SerializeToString(deterministic=True)


def sort_map_entries() -> None:
    """Makes `tfds.core.ExampleSerializer` write map entries sorted by key (idempotent)."""
    example_serializer.ExampleSerializer.serialize_example = _serialize_example
