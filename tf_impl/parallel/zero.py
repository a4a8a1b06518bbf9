"""AdamW over a flat view of a rank's tensors, with ZeRO-1: the moments partitioned over a group.

ZeRO stage 1 (Rajbhandari et al. 2020): every rank of a group that holds the same tensors keeps
only its 1/G slice of the AdamW moments ``m`` and ``v``. The gradients are summed over the group
as in plain data parallelism; each rank updates only its slice of the (flattened, zero-padded)
parameters with its slice of the moments, and an all-gather gives every rank the whole updated
tensor again. Weights stay fp32 in this project, so there are no separate fp32 master weights to
partition. The update is ``tf_impl.train.AdamW``'s, element for element.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from harness.config import TrainConfig
from tf_impl.optim import learning_rate


def split_flat(flat: np.ndarray, layout: Sequence[list]) -> dict[str, np.ndarray]:
    """Cut a flat vector into the ``[name, shape(, transposed)]`` runs of ``layout``, in order (trailing
    padding dropped). A run stored transposed (a kernel-layout weight, ``tf_impl.linear``) comes back in
    the canonical layout; layouts written before that flag existed have two fields and none transposed."""
    out, offset = {}, 0
    for name, shape, *flag in layout:
        n = int(np.prod(shape))
        run = flat[offset:offset + n].reshape(shape)
        out[name] = np.swapaxes(run, -1, -2) if flag and flag[0] else run
        offset += n
    return out


def join_flat(tensors: dict[str, np.ndarray], layout: Sequence[list]) -> np.ndarray:
    """Inverse of ``split_flat``: the canonical ``tensors`` named by ``layout``'s runs, each in its stored
    layout (transposed where the run says so), flattened and concatenated in order, as float32."""
    runs = [np.swapaxes(tensors[name], -1, -2) if flag and flag[0] else tensors[name] for name, _, *flag in layout]
    return np.concatenate([np.asarray(r, np.float32).reshape(-1) for r in runs])


class FlatAdamW:
    """AdamW for ``variables`` on one rank; ``partitioned`` keeps only this rank's 1/G of the moments.

    Args:
        variables: the rank's tensors this optimizer updates (identical on every member of ``group``).
        tc: the optimizer settings.
        coll: the mesh's collectives (for the all-gather of the updated slices).
        rank: this rank.
        group: the ranks holding the same ``variables``; the moments are split over them.
        partitioned: ZeRO-1 on (split over ``group``) or off (every rank keeps all moments).
    """

    def __init__(self, variables, tc: TrainConfig, coll, rank: int, group: tuple[int, ...], partitioned: bool):
        self.params, self.tc, self.coll, self.rank, self.group = list(variables), tc, coll, rank, group
        self.size = sum(int(np.prod(v.shape)) for v in self.params)
        self.parts = len(group) if partitioned else 1
        self.index = group.index(rank) if partitioned else 0
        self.shard = math.ceil(self.size / self.parts) if self.size else 0
        self.m = tf.Variable(tf.zeros([self.shard]), trainable=False, name="adam_m")
        self.v = tf.Variable(tf.zeros([self.shard]), trainable=False, name="adam_v")
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="count")

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds, from the allocated variables."""
        return sum(v.shape.num_elements() * v.dtype.size for v in (self.m, self.v, self.count))

    def _flat(self, tensors) -> tf.Tensor:
        flat = tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)             # [N]
        pad = self.shard * self.parts - self.size
        return tf.pad(flat, [[0, pad]]) if pad else flat                          # [G * shard]

    def apply(self, grads: Sequence[tf.Tensor]) -> tf.Tensor:
        """One update from the (summed, clipped) ``grads``; returns the learning rate used.

        Args:
            grads: one gradient per variable, each of its variable's shape, in ``variables`` order.

        Returns:
            the learning rate of this step, a scalar fp32 tensor (the count is advanced even when there is
            nothing to update).
        """
        tc = self.tc
        lr = learning_rate(self.count, tc)
        if not self.size:
            self.count.assign_add(1)
            return lr
        t = tf.cast(self.count + 1, tf.float32)
        c1, c2 = 1.0 - tf.pow(tc.b1, t), 1.0 - tf.pow(tc.b2, t)
        lo, hi = self.index * self.shard, (self.index + 1) * self.shard
        g = self._flat(grads)[lo:hi]                                              # [shard]
        p = self._flat(self.params)[lo:hi]                                        # [shard]
        self.m.assign(tc.b1 * self.m + (1.0 - tc.b1) * g)
        self.v.assign(tc.b2 * self.v + (1.0 - tc.b2) * tf.square(g))
        p = p - lr * ((self.m / c1) / (tf.sqrt(self.v / c2) + tc.eps) + tc.weight_decay * p)
        if self.parts > 1:
            p = self.coll.all_gather(p, self.rank, self.group)                    # [G * shard]
        offset = 0
        for var in self.params:
            n = var.shape.num_elements()
            var.assign(tf.reshape(p[offset:offset + n], var.shape))
            offset += n
        self.count.assign_add(1)
        return lr

    def slots(self) -> dict[str, np.ndarray]:
        """This rank's slice of the moments and the update count."""
        return {"m": self.m.numpy(), "v": self.v.numpy(), "count": np.asarray(self.count.numpy())}

    def load_slots(self, m: np.ndarray, v: np.ndarray, count: int) -> None:
        """Set this rank's slice (``m``/``v`` of the full flat length; the slice is cut here).

        Args:
            m: the first moments of all the group's variables, flattened in ``variables`` order, of shape [N].
            v: the second moments, likewise [N].
            count: the number of updates already applied (drives the bias correction and the schedule).
        """
        full = self.shard * self.parts
        lo, hi = self.index * self.shard, (self.index + 1) * self.shard
        for var, arr in ((self.m, m), (self.v, v)):
            arr = np.pad(np.asarray(arr, np.float32).reshape(-1), (0, full - arr.size))
            var.assign(arr[lo:hi])
        self.count.assign(int(count))
