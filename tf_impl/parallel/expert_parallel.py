"""Expert parallelism: routed experts sharded over the expert axis, tokens moved by all-to-all.

Axis letters (docs/internals.md's alphabet): X tokens of one rank, K activated experts, A = X*K
(token, expert) assignments, D model width, M ranks of one expert-parallel group (mesh devices); and,
declared here, P rows one rank can send to another (capacity), J local experts of a rank (E / M).

One rank's MoE layer (``ExpertDispatch``):
1. the gate (replicated) routes its X tokens: A assignments, each to expert ``e`` on rank ``e // J``;
2. every assignment's row is written to the send buffer [M, P, D] at (its rank, its order among the
   assignments to that rank); P = X * min(K, J) is the most one rank can send another, so nothing is
   ever dropped and the result equals the single-device model exactly (static shapes, no capacity
   factor); the row's local expert id rides along as one extra column;
3. all-to-all: each rank receives [M, P, D] rows for its J experts, runs them through the same tiled
   SwiGLU as the single-device model (``tf_impl.moe.tiled_swiglu``), and all-to-all sends them back;
4. every assignment reads its row back and the K rows of a token are summed with the gate weights.
Padding rows are zero and map to local expert 0: SwiGLU(0) = 0 and they add nothing to any gradient.

Shared experts, attention, norms, embedding, head and the gate are replicated on every rank; their
gradients are summed over all ranks. An expert shard's gradient already holds every token of its
expert group (the backward all-to-all brings them), and is summed over the data axis only.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from harness.config import ModelConfig, TrainConfig
from tf_impl.model import Transformer
from tf_impl.moe import MoE, dispatch_plan, gather_rows, sparse_dispatch, tiled_swiglu
from tf_impl.parallel.mesh import Collectives, DeviceMesh
from tf_impl.losses import bias_update, compute_loss
from tf_impl.parallel.zero import FlatAdamW, join_flat, split_flat

_EXPERT_WEIGHTS = ("w1", "w2", "w3")


class ExpertDispatch:
    """``MoE.dispatch`` on one rank: pairs to their experts' ranks and back by all-to-all."""

    def __init__(self, moe: MoE, coll: Collectives, rank: int, group: tuple[int, ...], n_local: int):
        self.moe, self.coll, self.rank, self.group, self.n_local = moe, coll, rank, group, n_local
        self.sent_rows: tf.Tensor | None = None  # assignments sent to other ranks, last traced call

    def __call__(self, x: tf.Tensor, weights: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        n, d = x.shape
        k, n_ranks, n_local = indices.shape[1], len(self.group), self.n_local
        a, cap = n * k, n * min(k, n_local)
        flat = tf.reshape(indices, [a])                                          # [A]
        dest, local = flat // n_local, flat % n_local                            # [A], [A]
        to = tf.one_hot(dest, n_ranks, dtype=tf.int32)                           # [A, M]
        pos = tf.reduce_sum(tf.cumsum(to, axis=0, exclusive=True) * to, -1)      # [A] order among those to dest
        slot = dest * cap + pos                                                  # [A] row in the send buffer
        rows = tf.gather(x, tf.range(a) // k)                                    # [A, D]
        payload = tf.concat([rows, tf.cast(local + 1, x.dtype)[:, None]], -1)    # [A, D+1]; id 0 marks padding
        send = tf.reshape(tf.scatter_nd(slot[:, None], payload, [n_ranks * cap, d + 1]),
                          [n_ranks, cap, d + 1])                                 # [M, P, D+1]
        me = self.group.index(self.rank)
        self.sent_rows = tf.reduce_sum(tf.cast(dest != me, tf.int32))
        recv = tf.reshape(self.coll.all_to_all(send, self.rank, self.group), [n_ranks * cap, d + 1])  # [M*P, D+1]
        ids = tf.maximum(tf.cast(recv[:, d], tf.int32) - 1, 0)                   # [M*P]; padding -> expert 0
        y = self._local_experts(recv[:, :d], ids)                                # [M*P, D]
        back = tf.reshape(self.coll.all_to_all(tf.reshape(y, [n_ranks, cap, d]), self.rank, self.group),
                          [n_ranks * cap, d])                                    # [M*P, D]
        y_assigned = tf.reshape(tf.gather(back, slot), [n, k, d])                # [X, K, D]
        return tf.einsum("XKD,XK->XD", y_assigned, weights)

    def _local_experts(self, xs: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
        """SwiGLU of rows ``xs`` [M*P, D] by their local expert ``ids`` [M*P]; the single-device tiled scheme."""
        r, d = xs.shape
        tile_rows, n_rows = dispatch_plan(r, self.n_local, loop=False)
        slot_of_row, row_of_slot, counts, row_start = sparse_dispatch(ids[:, None], self.n_local, tile_rows, n_rows)
        sorted_rows = gather_rows(xs, row_of_slot, r, 1)                         # [n_rows, D]
        moe = self.moe
        y = tiled_swiglu(sorted_rows, counts, row_start, tile_rows, moe.w1, moe.w2, moe.w3, moe._matmul)
        return tf.gather(y, slot_of_row)                                         # [M*P, D]


def _moes(model: Transformer) -> list[MoE]:
    blocks = model.layers + [m.block for m in model.mtp]
    return [b.ffn for b in blocks if isinstance(b.ffn, MoE)]


class ExpertParallel:
    """A ``tf_impl.Transformer`` laid out on a ``DeviceMesh``, trained with AdamW (ZeRO-1 if the mesh says so).

    Built from a canonical state (``Transformer.state_dict()``), so it starts from exactly the
    weights of a single-device model. Each rank holds a replica of the replicated tensors and its
    expert shard; ``state_dict()`` gathers them back into the canonical state.

    Args:
        cfg: the model; ``mesh.config.check_layout(cfg)`` must pass.
        mesh: the devices.
        state: the canonical weights to start from.
        tc: the optimizer's settings (as ``tf_impl.train.Trainer``).
        update_bias: apply aux-loss-free balancing with the load summed over all ranks.
    """

    def __init__(self, cfg: ModelConfig, mesh: DeviceMesh, state: dict[str, np.ndarray],
                 tc: TrainConfig = TrainConfig(), update_bias: bool = True):
        mesh.config.check_layout(cfg)
        self.cfg, self.mesh, self.tc = cfg, mesh, tc
        self.coll = Collectives(mesh)
        self.n_local = cfg.n_routed_experts // mesh.ep
        self.replicas: list[Transformer] = []
        for rank, device in enumerate(mesh.devices):
            with tf.device(device):
                model = Transformer(cfg, seed=0, compiled=False)
                model.load_state_dict(state)
                named = model.named_variables()
                _, e = mesh.coords(rank)
                lo = e * self.n_local
                shards = {}
                for moe in _moes(model):
                    for n in _EXPERT_WEIGHTS:
                        full = getattr(moe, n)
                        shards[id(full)] = tf.Variable(full[lo:lo + self.n_local], name=n)  # [J, ...] shard
                        setattr(moe, n, shards[id(full)])
                    moe.dispatch = ExpertDispatch(moe, self.coll, rank, mesh.expert_group(rank), self.n_local)
                model._params = {}  # a replica is not a standalone model: its state is gathered by state_dict()
                if rank == 0:
                    self._names = self._canonical_positions(model, {k: s._replace(var=shards.get(id(s.var), s.var))
                                                                    for k, s in named.items()})
            self.replicas.append(model)
        self.variables = [list(m.trainable_variables) for m in self.replicas]
        self.expert_pos = {i for i, v in enumerate(self.variables[0])
                           if any(v is getattr(moe, n) for moe in _moes(self.replicas[0]) for n in _EXPERT_WEIGHTS)}
        self.update_bias = update_bias and cfg.bias_update_speed > 0
        self.optimizers = [self._optimizer(rank) for rank in mesh.all_ranks]
        self._step_fn = tf.function(self._step)
        self._grad_fn = tf.function(self._grads_and_loss)
        self._fwd_fn = tf.function(self._forward)

    # ------------------------------------------------------------------ layout
    @staticmethod
    def _canonical_positions(model: Transformer, named: dict) -> dict[str, tuple[int, int | None, str, bool]]:
        """{canonical name: (position in the replica's trainable_variables or gate_biases(), index into a
        stacked tensor, "trainable" or "bias", stored transposed)}, from ``named`` ({name: Slot}, shards
        swapped in)."""
        pos = {id(v): i for i, v in enumerate(model.trainable_variables)}
        biases = {id(b): j for j, b in enumerate(model.gate_biases())}
        out = {}
        for name, slot in named.items():
            if id(slot.var) in pos:
                out[name] = (pos[id(slot.var)], slot.index, "trainable", slot.transposed)
            else:
                out[name] = (biases[id(slot.var)], None, "bias", False)
        return out

    def _split(self, rank: int, values: list) -> tuple[list, list]:
        """A rank's per-variable ``values`` split into (replicated ones, expert-shard ones), in order."""
        rep = [v for i, v in enumerate(values) if i not in self.expert_pos]
        exp = [v for i, v in enumerate(values) if i in self.expert_pos]
        return rep, exp

    def _optimizer(self, rank: int) -> tuple[FlatAdamW, FlatAdamW]:
        """The rank's AdamW over its replicated tensors (partitioned over all ranks under ZeRO-1) and over
        its expert shard (partitioned over the data axis)."""
        rep, exp = self._split(rank, self.variables[rank])
        zero = self.mesh.config.zero
        with tf.device(self.mesh.devices[rank]):
            return (FlatAdamW(rep, self.tc, self.coll, rank, self.mesh.all_ranks, partitioned=zero),
                    FlatAdamW(exp, self.tc, self.coll, rank, self.mesh.data_group(rank), partitioned=zero))

    # ------------------------------------------------------------------ compute
    def _shards(self, tokens):
        """The global batch [B, T] split over the ranks: rank r gets rows r*B/R .. (r+1)*B/R."""
        self.mesh.config.check_layout(self.cfg, batch_size=int(tokens.shape[0]))
        per = tokens.shape[0] // self.mesh.size
        out = []
        for r, device in enumerate(self.mesh.devices):
            with tf.device(device):
                out.append(tf.identity(tokens[r * per:(r + 1) * per]))
        return out

    def _forward(self, tokens):
        outs = []
        for r, (model, shard) in enumerate(zip(self.replicas, self._shards(tokens))):
            with tf.device(self.mesh.devices[r]):
                outs.append(model(shard))                                       # [B/R, T, V]
        return outs

    def _grads_and_loss(self, tokens):
        """Per rank: (replicated grads summed over all ranks, expert grads summed over the data axis),
        the loss parts, the expert load summed over all ranks, and the rows each rank sent away."""
        shards = self._shards(tokens)
        scale = 1.0 / self.mesh.size  # every rank holds B/R sequences: the global mean is the mean of means
        with tf.GradientTape() as tape:
            losses, parts, loads = [], [], []
            for r, (model, shard) in enumerate(zip(self.replicas, shards)):
                with tf.device(self.mesh.devices[r]):
                    logits, aux = model.forward_aux(shard)
                    loss, part = compute_loss(logits, aux, shard, self.cfg)
                    losses.append(loss * scale)
                    parts.append({"loss": loss, **part})
                    loads.append(aux["expert_load"])
        grads = tape.gradient(losses, self.variables)
        out = []
        for r, g in enumerate(grads):
            with tf.device(self.mesh.devices[r]):
                g = [tf.zeros_like(v) if x is None else tf.convert_to_tensor(x) for x, v in zip(g, self.variables[r])]
                rep, exp = self._split(r, g)
                rep = _unflatten(self.coll.all_reduce(_flatten(rep), r, self.mesh.all_ranks), rep)
                exp = _unflatten(self.coll.all_reduce(_flatten(exp), r, self.mesh.data_group(r)), exp) if exp else exp
                mean_parts = {k: self.coll.all_reduce(v * scale, r, self.mesh.all_ranks) for k, v in parts[r].items()}
                load = self.coll.all_reduce(loads[r], r, self.mesh.all_ranks)
                sent = tf.add_n([moe.dispatch.sent_rows for moe in _moes(self.replicas[r])] or [tf.constant(0)])
                out.append((rep, exp, mean_parts, load, sent))
        return out

    def _step(self, tokens):
        results = self._grads_and_loss(tokens)
        records = []
        for r, (rep, exp, parts, load, sent) in enumerate(results):
            with tf.device(self.mesh.devices[r]):
                sq = tf.add_n([tf.reduce_sum(tf.square(g)) for g in rep])
                if exp:  # each expert shard once: sum over the expert group
                    sq += self.coll.all_reduce(tf.add_n([tf.reduce_sum(tf.square(g)) for g in exp]), r,
                                               self.mesh.expert_group(r))
                norm = tf.sqrt(sq)
                clip = tf.minimum(1.0, self.tc.clip_norm / tf.maximum(norm, 1e-30))
                opt_rep, opt_exp = self.optimizers[r]
                lr = opt_rep.apply([g * clip for g in rep])
                if exp:
                    opt_exp.apply([g * clip for g in exp])
                if self.update_bias:
                    for i, bias in enumerate(self.replicas[r].gate_biases()):
                        bias.assign(bias_update(bias, load[i], self.cfg.bias_update_speed))
                records.append({**parts, "grad_norm": norm, "lr": lr, "sent_rows": sent})
        return records

    # ------------------------------------------------------------------ public
    def forward(self, tokens: ArrayLike) -> np.ndarray:
        """Logits [B, T, V] of the global batch ``tokens`` [B, T], computed on the mesh."""
        return np.concatenate([o.numpy() for o in self._fwd_fn(tf.constant(tokens, tf.int32))], 0)

    def gradients(self, tokens: ArrayLike) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Canonically named gradients of the global mean loss, gathered from the mesh, and the loss parts."""
        results = self._grad_fn(tf.constant(tokens, tf.int32))
        per_rank = []
        for r, (rep, exp, _, _, _) in enumerate(results):
            rep_it, exp_it = iter(rep), iter(exp)
            per_rank.append([next(exp_it) if i in self.expert_pos else next(rep_it)
                             for i in range(len(self.variables[r]))])
        return self._gather(lambda r, i: per_rank[r][i].numpy(), trainable_only=True), \
            {k: float(v) for k, v in results[0][2].items()}

    def train_step(self, tokens: ArrayLike) -> dict[str, float]:
        """One AdamW update on the global batch ``tokens`` [B, T]; the record of rank 0 (all ranks agree)."""
        records = self._step_fn(tf.constant(tokens, tf.int32))
        out = {k: float(v) for k, v in records[0].items() if k != "sent_rows"}
        out["sent_rows"] = [int(rec["sent_rows"]) for rec in records]
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """The canonical state gathered from the mesh (replicated tensors from rank 0, experts from their shards)."""
        return self._gather(lambda r, i: self.variables[r][i].numpy())

    def _gather(self, value, trainable_only: bool = False) -> dict[str, np.ndarray]:
        out = {}
        for name, (pos, index, kind, transposed) in self._names.items():
            if kind == "bias":
                if not trainable_only:
                    out[name] = self.replicas[0].gate_biases()[pos].numpy()
                continue
            if index is None or pos not in self.expert_pos:
                arr = value(0, pos)
                arr = arr if index is None else arr[index]
            else:
                rank = index // self.n_local  # data index 0, expert index index // J
                arr = value(rank, pos)[index % self.n_local]
            out[name] = np.array(np.swapaxes(arr, -1, -2) if transposed else arr, np.float32)  # canonical
        return out

    def flat_layout(self) -> tuple[list, list]:
        """``(rep, exp)``: ``[canonical name, stored shape, stored transposed]`` of every element run of the
        flat REP vector (replicated tensors, the same on every rank) and, per expert index e, of the flat
        EXP vector of shard e (its J experts of every stacked tensor), in the order the optimizers
        flatten them (``zero.split_flat`` turns a run back into the canonical tensor)."""
        by_pos: dict[int, list] = {}
        flags: dict[int, bool] = {}
        for name, (pos, index, kind, transposed) in self._names.items():
            if kind == "trainable":
                by_pos.setdefault(pos, []).append((index, name))
                flags[pos] = transposed
        rep, exp = [], [[] for _ in range(self.mesh.ep)]
        for pos, var in enumerate(self.variables[0]):
            entries = sorted(by_pos[pos], key=lambda t: -1 if t[0] is None else t[0])
            if pos not in self.expert_pos:
                rep.append([entries[0][1], var.shape.as_list(), flags[pos]])
                continue
            for e in range(self.mesh.ep):
                # The shard [J, ...] flattens row-major: expert e*J + j's tensor is run j.
                exp[e].extend([name, var.shape.as_list()[1:], flags[pos]] for index, name in entries
                              if index // self.n_local == e)
        return rep, exp

    def bias_names(self) -> list[str]:
        """Canonical names of ``gate_biases()`` in order."""
        names = {pos: name for name, (pos, _, kind, _) in self._names.items() if kind == "bias"}
        return [names[i] for i in range(len(names))]

    def load_optimizer(self, m: dict[str, np.ndarray], v: dict[str, np.ndarray], count: int) -> None:
        """Set every rank's AdamW moments from canonically named ``m`` and ``v`` (e.g. ``load_sharded``).

        Args:
            m: ``{canonical name: first moment}``, each of its tensor's canonical shape.
            v: ``{canonical name: second moment}``, likewise.
            count: the number of updates already applied.
        """
        rep, exp = self.flat_layout()
        for r, (opt_rep, opt_exp) in enumerate(self.optimizers):
            _, e = self.mesh.coords(r)
            opt_rep.load_slots(join_flat(m, rep), join_flat(v, rep), count)
            opt_exp.load_slots(join_flat(m, exp[e]), join_flat(v, exp[e]), count)

    def optimizer_slots(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Canonically named ``(m, v)`` gathered from every rank's partition (for checks).

        Returns:
            ``({canonical name: m}, {canonical name: v})``, each moment of its tensor's canonical shape.
        """
        rep, exp = self.flat_layout()
        out = ({}, {})
        for slot_i, slot in enumerate(("m", "v")):
            pieces = [getattr(self.optimizers[r][0], slot).numpy() for r in self.mesh.all_ranks]
            full_rep = pieces[0] if self.optimizers[0][0].parts == 1 else np.concatenate(pieces)
            out[slot_i].update(split_flat(full_rep, rep))
            for e in range(self.mesh.ep):
                ranks = [d * self.mesh.ep + e for d in range(self.mesh.dp)]
                pieces = [getattr(self.optimizers[r][1], slot).numpy() for r in ranks]
                full = pieces[0] if self.optimizers[ranks[0]][1].parts == 1 else np.concatenate(pieces)
                out[slot_i].update(split_flat(full, exp[e]))
        return out

    def optimizer_bytes(self) -> list[int]:
        """Bytes of AdamW state allocated on each rank (the moment variables' sizes)."""
        return [rep.state_bytes() + exp.state_bytes() for rep, exp in self.optimizers]

    def parameter_bytes(self) -> list[int]:
        """Bytes of model weights allocated on each rank."""
        return [sum(v.shape.num_elements() * v.dtype.size for v in vs) for vs in self.variables]


def _flatten(tensors: list) -> tf.Tensor:
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], 0) if tensors else tf.zeros([0])


def _unflatten(flat: tf.Tensor, like: list) -> list:
    sizes = [int(np.prod(t.shape)) for t in like]
    return [tf.reshape(p, t.shape) for p, t in zip(tf.split(flat, sizes), like)]


__all__ = ["ExpertDispatch", "ExpertParallel"]
