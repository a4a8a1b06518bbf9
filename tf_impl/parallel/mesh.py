"""The device mesh (data-parallel x expert-parallel ranks) and the collectives that run on it.

The mesh is built from ``harness.config.MeshConfig`` and the devices present: GPUs when there are
any, else CPUs (split into logical devices with ``use_logical_devices`` before TensorFlow starts).
One ``tf.function`` holds every rank's ops, each under its own device (in-graph replication, as
``tf.distribute.MirroredStrategy`` does); ranks exchange data only through tf.distribute's
collective ops (all-reduce, all-gather, reduce-scatter, all-to-all), which run on NCCL on GPUs and
on the ring implementation on CPUs.

Two facts of those ops decide the code below (both found on this host, see
harness/qa/knowledge_base.toml "collective_timeout_no_ordering_token"):
* every collective needs an ``ordering_token`` (a resource on its device); without one the ops of
  one call never meet and time out with "Collective has timed out waiting for other workers";
* the ranks of one collective must use the same instance key, and two collectives of one group in
  one function need different keys: keys are handed out per (group, rank) in program order, so every
  rank that issues the same sequence of collectives on a group gets the same keys.
"""

from __future__ import annotations

import itertools

import tensorflow as tf
from tensorflow.python.ops import collective_ops, gen_collective_ops

from harness.config import ConfigError, MeshConfig


def use_logical_devices(n: int) -> list[str]:
    """Split the host CPU into ``n`` logical devices; must run before TensorFlow initialises.

    A call after TF started (any op ran) cannot split it any more: the error says to call this first, in
    a fresh process. A repeated call asking for the split already in place succeeds.

    Args:
        n: the number of logical CPU devices, usually ``MeshConfig.n_devices``.

    Returns:
        the logical CPU device names (``/job:localhost/replica:0/task:0/device:CPU:i``).
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as e:
        present = len(tf.config.list_logical_devices("CPU"))
        if present == n:
            return [d.name for d in tf.config.list_logical_devices("CPU")]
        raise RuntimeError(f"cannot split the CPU into {n} logical devices: TensorFlow is already initialised "
                           f"with {present} ({e}); call tf_impl.parallel.use_logical_devices({n}) before any "
                           "TensorFlow op, in a fresh process") from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


class DeviceMesh:
    """``MeshConfig``'s ranks on concrete devices. Rank r = (data index r // EP, expert index r % EP)."""

    def __init__(self, mesh: MeshConfig, devices: list[str] | None = None):
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        if len(devices) < mesh.n_devices:
            raise ConfigError(
                f"the mesh needs data_parallel={mesh.data_parallel} x expert_parallel={mesh.expert_parallel} = "
                f"{mesh.n_devices} devices, but only {len(devices)} are present; use a smaller mesh or, on CPU, "
                f"tf_impl.parallel.use_logical_devices({mesh.n_devices}) before TensorFlow starts")
        self.config = mesh
        self.devices = list(devices[: mesh.n_devices])
        self.size = mesh.n_devices
        self.dp, self.ep = mesh.data_parallel, mesh.expert_parallel

    def coords(self, rank: int) -> tuple[int, int]:
        """``(data index, expert index)`` of ``rank``."""
        return divmod(rank, self.ep)

    def expert_group(self, rank: int) -> tuple[int, ...]:
        """The ranks of ``rank``'s expert-parallel group (same data index): its all-to-all peers."""
        d, _ = self.coords(rank)
        return tuple(range(d * self.ep, (d + 1) * self.ep))

    def data_group(self, rank: int) -> tuple[int, ...]:
        """The ranks holding the same expert shard as ``rank`` (same expert index, every data index)."""
        _, e = self.coords(rank)
        return tuple(e + d * self.ep for d in range(self.dp))

    @property
    def all_ranks(self) -> tuple[int, ...]:
        """Every rank of the mesh, ``(0, ..., size - 1)``: the group of a mesh-wide collective."""
        return tuple(range(self.size))


class Collectives:
    """tf.distribute's collective ops over groups of ``mesh`` ranks, for use inside one ``tf.function``.

    Every method takes the calling ``rank`` and the ``group`` (a tuple of ranks it belongs to) and
    must be called once by every member of the group, each under its own device, in the same order.
    """

    _group_keys = itertools.count(1)  # process-wide: two meshes in one process never share a key

    def __init__(self, mesh: DeviceMesh, timeout_s: float = 120.0):
        self.mesh = mesh
        self.timeout = timeout_s
        self._groups: dict[tuple[int, ...], int] = {}
        self._instances: dict[tuple[tuple[int, ...], int], itertools.count] = {}
        self._tokens = []
        for device in mesh.devices:
            with tf.init_scope(), tf.device(device):
                self._tokens.append(tf.Variable(0.0, trainable=False, name="ordering_token"))

    def _keys(self, rank: int, group: tuple[int, ...]) -> tuple[int, int]:
        if rank not in group:
            raise ValueError(f"rank {rank} is not in group {group}")
        gkey = self._groups.setdefault(group, next(Collectives._group_keys))
        ikey = next(self._instances.setdefault((group, rank), itertools.count(1)))
        return gkey, ikey

    def _run(self, op, x, rank, group, **kw):
        gkey, ikey = self._keys(rank, group)
        with tf.device(self.mesh.devices[rank]):
            return op(x, len(group), gkey, ikey, timeout=self.timeout,
                      ordering_token=self._tokens[rank].handle, **kw)

    def all_reduce(self, x: tf.Tensor, rank: int, group: tuple[int, ...]) -> tf.Tensor:
        """Sum of ``x`` over the group (same shape on every member).

        Args:
            x: this rank's tensor, of any shape [...] shared by the whole group.
            rank: the calling rank, a member of ``group``.
            group: the ranks that sum, in the same order on every member.

        Returns:
            the elementwise sum, of the shape of ``x``, on ``rank``'s device (``x`` itself for a group of one).
        """
        if len(group) == 1:
            return x
        return self._run(collective_ops.all_reduce_v2, x, rank, group)

    def all_gather(self, x: tf.Tensor, rank: int, group: tuple[int, ...]) -> tf.Tensor:
        """The members' ``x`` concatenated along axis 0, in group order.

        Args:
            x: this rank's tensor, of shape [n, ...] (the trailing dimensions shared by the group).
            rank: the calling rank, a member of ``group``.
            group: the ranks that gather, in the same order on every member.

        Returns:
            [len(group) * n, ...] with member i's rows at i * n (``x`` itself for a group of one).
        """
        if len(group) == 1:
            return x
        return self._run(collective_ops.all_gather_v2, x, rank, group)

    def reduce_scatter(self, x: tf.Tensor, rank: int, group: tuple[int, ...]) -> tf.Tensor:
        """Member i gets slice i (of len(x)/len(group) rows) of the group's sum of ``x``.

        Args:
            x: this rank's tensor, of shape [n, ...] with n divisible by the group size (same shape on every
                member).
            rank: the calling rank, a member of ``group``.
            group: the ranks that reduce, in the same order on every member.

        Returns:
            [n / len(group), ...]: the rows of the sum that belong to ``rank``'s position in ``group`` (``x``
            itself for a group of one).
        """
        if len(group) == 1:
            return x
        gkey, ikey = self._keys(rank, group)
        with tf.device(self.mesh.devices[rank]):
            return gen_collective_ops.collective_reduce_scatter_v2(
                x, len(group), gkey, ikey, ordering_token=[self._tokens[rank].handle], merge_op="Add",
                final_op="Id", timeout_seconds=self.timeout)

    def all_to_all(self, x: tf.Tensor, rank: int, group: tuple[int, ...]) -> tf.Tensor:
        """``x`` [G, ...] (G = group size): slice g goes to member g; returns what each member sent here,
        stacked [G, ...] in group order. Differentiable: the gradient is the reverse all-to-all."""
        if len(group) == 1:
            return x
        fwd = self._keys(rank, group)
        bwd = self._keys(rank, group)  # the backward exchange's keys, taken now so every rank agrees

        @tf.custom_gradient
        def exchange(t):
            def grad(dy):
                return self._a2a(dy, rank, group, bwd)
            return self._a2a(t, rank, group, fwd), grad

        return exchange(x)

    def _a2a(self, x, rank, group, keys):
        with tf.device(self.mesh.devices[rank]):
            return collective_ops.all_to_all_v2(x, len(group), keys[0], keys[1], timeout=self.timeout,
                                                ordering_token=self._tokens[rank].handle)
