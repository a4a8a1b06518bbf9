"""Distributed training on TensorFlow's own collectives: a device mesh, expert parallelism, ZeRO-1
and sharded checkpoints. See docs/distributed.md for the design and why tf.distribute, not DTensor."""

from tf_impl.parallel.mesh import Collectives, DeviceMesh, use_logical_devices

__all__ = ["Collectives", "DeviceMesh", "use_logical_devices"]
