"""Training checkpoints: orbax `CheckpointManager` with the `ocp.args` API.

A checkpoint step holds three items: `state` (the train state pytree, e.g. a flax
`struct.PyTreeNode` `TrainState(step, params, opt_state, batch_stats, rng)`), `data` (the input
iterator's state, JSON) and `meta` (JSON: config, metrics, anything for people). Orbax writes a
step into a temporary directory and renames it when complete, so a crash mid-write leaves no
half step behind; the newest `keep` steps are kept.

Saving is asynchronous: `save` takes hold of the arrays' current values before it returns, so the
caller may hand the state to a train step that donates it, and writes in the background. Call `wait()` (or
`close()`) before the process exits or before reading the checkpoint back.

Restoring needs a target: a pytree of the same structure (`jax.eval_shape(create_state)` or a
concrete state) whose leaves give shape, dtype and, optionally, sharding. Without it, optax states
would come back as plain dicts. Typed PRNG keys (`jax.random.key`) round trip as they are
(orbax-checkpoint 0.12.8); raw `uint32` key data works too.

In a multi-process run every process calls `save` and `restore` with its part of the global
arrays; the JSON items are written by process 0 only, so `data_state` must hold what every process
needs to resume (for example the states of all processes' iterators, or one they share).
"""

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath


class UnreadableCheckpointError(RuntimeError):
    """A checkpoint step is there but cannot be read back (truncated or damaged files)."""


class Checkpointer:
    """Saves and restores (state, data_state, meta) at integer steps under one directory.

    Args:
        directory: where the step directories go (created if missing); local or any path `epath`
            understands (gs://...).
        keep: how many of the newest steps to keep; older ones are deleted after a save.
        async_save: write in a background thread (True) or before `save` returns (False).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3, *, async_save: bool = True):
        path = str(directory)
        self.directory = epath.Path(path if "://" in path else os.path.abspath(path))
        options = ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any, data_state: dict, meta: dict,
             force: bool = False) -> bool:
        """Starts writing a checkpoint of step `step`.

        Args:
            step: the training step (the step directory's name).
            state: pytree of arrays (jax or NumPy), e.g. the train state.
            data_state: JSON-serializable dict, e.g. the input iterator's state.
            meta: JSON-serializable dict, e.g. the config and last metrics.
            force: save even where the manager's policy would skip this step.

        Returns:
            True if a save started; False if it was skipped (this step already exists, or a
            later one does).

        Raises:
            TypeError: if `data_state` or `meta` cannot be written as JSON (checked here, before
                the background write, so the error points at the caller).
        """
        for name, item in (("data_state", data_state), ("meta", meta)):
            try:
                json.dumps(item)
            except (TypeError, ValueError) as error:
                raise TypeError(f"{name} must be JSON-serializable: {error}") from error
        if step in self._manager.all_steps():
            return False
        return self._manager.save(
                step,
                args=ocp.args.Composite(
                        state=ocp.args.StandardSave(state),
                        data=ocp.args.JsonSave(data_state),
                        meta=ocp.args.JsonSave(meta)),
                force=force)

    def latest_step(self) -> int | None:
        """The newest complete (or being written by this process) step, None if there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps present, ascending."""
        return sorted(self._manager.all_steps())

    def read_meta(self, step: int) -> dict:
        """The `meta` JSON of `step` alone (no state is read).

        Raises:
            UnreadableCheckpointError: it cannot be read; the message names the step.
        """
        try:
            return self._manager.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except Exception as error:  # orbax and json raise many kinds
            raise UnreadableCheckpointError(
                    f"checkpoint step {step} in {self.directory}: its meta cannot be read "
                    f"({type(error).__name__}: {str(error)[:200]})") from error

    def restore(self, abstract_state: Any, step: int | None = None, *,
                sharding: jax.sharding.Sharding | None = None) -> tuple[Any, dict, dict]:
        """Reads a checkpoint back into the structure and placement of `abstract_state`.

        Args:
            abstract_state: pytree of the saved state's structure; leaves are
                `jax.ShapeDtypeStruct` (from `jax.eval_shape`; a `sharding` on them places the
                restored array, e.g. on the mesh) or concrete arrays (their shape, dtype and
                sharding are used).
            step: which step; None = the latest.
            sharding: placement for leaves that carry none (e.g. `sharding.replicated(mesh)`);
                leaves without either come back where they were saved from.

        Returns:
            (state, data_state, meta): state with `abstract_state`'s pytree types (optax state
            NamedTuples, flax struct nodes) and shardings; the two JSON dicts as saved.

        Raises:
            FileNotFoundError: if the directory holds no checkpoint, or not the requested step.
            UnreadableCheckpointError: the step is there but cannot be read (damaged files); the
                message names it and the step before it.
        """
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise FileNotFoundError(f"no checkpoint in {self.directory}")
            step = steps[-1]
        elif step not in steps:
            raise FileNotFoundError(
                    f"no checkpoint of step {step} in {self.directory} (steps present: {steps})")
        target = jax.tree.map(lambda leaf: _abstract_leaf(leaf, sharding), abstract_state)
        try:
            restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                            state=ocp.args.StandardRestore(target),
                            data=ocp.args.JsonRestore(),
                            meta=ocp.args.JsonRestore()))
        except Exception as error:  # orbax, tensorstore and json raise many kinds
            folder = self.directory / str(step)
            others = [s for s in steps if s != step]
            hint = (f"remove {folder} to go on from step {others[-1]}" if others
                    else "no other step is kept")
            raise UnreadableCheckpointError(
                    f"checkpoint step {step} in {self.directory} cannot be read "
                    f"({type(error).__name__}: {str(error)[:200]}); {hint}") from error
        return restored.state, restored.data, restored.meta

    def wait(self) -> None:
        """Blocks until every started save is written and finalized."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager's resources."""
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _abstract_leaf(leaf: Any, sharding: jax.sharding.Sharding | None) -> jax.ShapeDtypeStruct:
    leaf_sharding = getattr(leaf, "sharding", None)
    if leaf_sharding is None:
        leaf_sharding = sharding
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf_sharding)
