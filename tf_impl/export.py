"""Export a ``Transformer`` as a SavedModel that a TensorFlow runtime serves without this project's code.

Why these signatures: the model's compiled paths need static shapes (the sparse MoE plans its row
buffer from the token count at trace time), so a SavedModel cannot take a prompt of any length in one
call. It takes the prompt in fixed-size chunks instead, with the KV cache as explicit state tensors
passed in and returned, so the caller (a serving engine) owns the state and a replica holds none:

* ``new_cache_b{B}() -> {kv [L, B, S, C], pe [L, B, S, R]}``: an empty absorbed-MLA cache (zeros);
* ``prefill_b{B}_t{c}(tokens int32 [B, c], start int32 [], kv, pe) -> {logits [B, c, V], kv, pe}``: runs
  ``c`` prompt tokens at positions ``start .. start + c - 1``, writing them into the cache;
* ``decode_b{B}(tokens int32 [B], pos int32 [], kv, pe) -> {logits [B, V], kv, pe}``: one token per
  sequence at position ``pos`` (also what a prompt's last ``< min(chunks)`` tokens go through);
* ``tokenize(text string []) -> {ids int32 [n]}`` and ``detokenize(ids int32 [n]) -> {text string []}``:
  the byte tokenizer of the data pipeline (id = byte value; ids >= 256 have no text).

Axis letters: L layers, B batch, S max_seq_len, C kv latent, R rope dim, V vocab, c chunk length.
One export holds these for every batch size of ``batch_sizes`` and chunk length of ``chunks``; a prompt
of length T runs as ``T // c0`` chunks of the longest length, then the next, and its last tokens
through ``decode`` (``serving.runtime.chunk_plan``). ``assets.extra/serving.json`` describes the export (config,
shapes, signature names) for a server that imports only TensorFlow.

The cache is the absorbed layout (latent [B, S, C] and shared rope key [B, S, R] per layer), the
small one MLA exists for. Inside the exported functions the model's own attention code runs; its
cache reads and in-place writes go to ``_StateBuffer``, which has the two methods the attention uses
of a ``tf.Variable`` (slicing and ``scatter_nd_update``) but replaces its tensor functionally, so the
functions are pure: same inputs, same outputs, no hidden state.

FP8 (``cfg.dtype == "fp8"``): every weight the model quantises is stored as its e4m3 codes and fp32
128x128 block scales (``tf_impl.fp8.quantize_weight``), not as the fp32 master weights, and the
exported functions dequantise them before the model's FP8 matmuls. Quantising a dequantised weight
gives back the same codes and scales (the block amax maps to 448 again), so the served logits are
those of the FP8 model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import tensorflow as tf

from tf_impl.attention import CacheMode
from tf_impl.data import byte_ids
from tf_impl.fp8 import dequantize_weight, quantize_weight
from tf_impl.linear import Linear
from tf_impl.model import Transformer
from tf_impl.moe import MoE

FORMAT_VERSION = 1
METADATA = Path("assets.extra") / "serving.json"
DEFAULT_CHUNKS = (64, 8)
BYTE_VOCAB = 256


class ExportError(ValueError):
    """An export that cannot be written as asked (bad batch sizes or chunks, an existing directory)."""


class _StateBuffer:
    """A cache buffer as a value: reads and ``scatter_nd_update`` like the model's cache ``tf.Variable``,
    but each write replaces ``value`` with a new tensor, so the exported functions return the new state."""

    def __init__(self, value: tf.Tensor):
        self.value = value

    @property
    def shape(self) -> tf.TensorShape:
        """The buffer's static shape, e.g. [B, S, C]."""
        return self.value.shape

    def __getitem__(self, key):
        return self.value[key]

    def scatter_nd_update(self, indices: tf.Tensor, updates: tf.Tensor) -> None:
        """Write ``updates`` at ``indices`` (what ``tf.Variable.scatter_nd_update`` does in place)."""
        self.value = tf.tensor_scatter_nd_update(self.value, indices, updates)


class _StateCache:
    """What ``Transformer.hidden_states`` reads of a KVCache inside a tf.function (its per-layer buffers and
    mode), over ``_StateBuffer`` values instead of variables."""

    mode = CacheMode.ABSORB

    def __init__(self, bufs: list[_StateBuffer]):
        self.layers = [(bufs[i], bufs[i + 1]) for i in range(0, len(bufs), 2)]  # [(kv, pe)] per layer


def _fp8_sites(model: Transformer) -> list[tuple[tf.Module, str]]:
    """(module, attribute) of every weight the FP8 model quantises in the main layers (not the MTP modules,
    which serving never runs; the head, embedding, norms and gates stay fp32 in FP8 mode)."""
    sites = []
    for layer in model.layers:
        for m in (layer, *layer.submodules):
            if isinstance(m, Linear) and m.fp8:
                sites.append((m, "weight"))
            elif isinstance(m, MoE) and m.fp8:
                sites += [(m, "w1"), (m, "w2"), (m, "w3")]
    return sites


@contextlib.contextmanager
def _dequantized(sites: list[tuple[tf.Module, str]], blocks: list[tuple[tf.Variable, tf.Variable]]) -> Iterator[None]:
    """While tracing: each FP8 site's weight is ``dequantize(codes, scales)``, read from the exported blocks."""
    originals = [getattr(m, attr) for m, attr in sites]
    try:
        for (m, attr), (codes, scales) in zip(sites, blocks):
            setattr(m, attr, dequantize_weight(codes, scales))
        yield
    finally:
        for (m, attr), var in zip(sites, originals):
            setattr(m, attr, var)


class _Export(tf.Module):
    """What the SavedModel holds: the weights serving reads (fp32 variables, FP8 codes and scales) and the
    signature functions. The Transformer itself is not tracked, so its MTP modules and, in FP8 mode, its
    fp32 master weights are not saved."""

    def __init__(self, model: Transformer, sites: list[tuple[tf.Module, str]]):
        super().__init__(name="deepseek_v3_serving")
        # ``sites`` is not kept as an attribute: tf.Module would track its modules and save their variables.
        skip = {id(getattr(m, attr)) for m, attr in sites}
        used = {}
        for name, slot in model.named_variables().items():
            if not name.startswith("mtp.") and id(slot.var) not in skip:
                used[id(slot.var)] = slot.var
        self.weights = list(used.values())
        self.fp8_codes, self.fp8_scales = [], []
        for m, attr in sites:
            # In the stored layout ([.., I, O] for kernel-layout weights): 128x128 blocks commute with the transpose.
            codes, scales = quantize_weight(getattr(m, attr))              # e4m3 [.., A, B], fp32 [.., A/128, B/128]
            self.fp8_codes.append(tf.Variable(codes, trainable=False, name="fp8_codes"))
            self.fp8_scales.append(tf.Variable(scales, trainable=False, name="fp8_scales"))

    def blocks(self) -> list[tuple[tf.Variable, tf.Variable]]:
        """(codes, scales) per FP8 site, in the order of the ``sites`` it was built with."""
        return list(zip(self.fp8_codes, self.fp8_scales))


def _cache_specs(model: Transformer, batch: int) -> tuple[tf.TensorSpec, tf.TensorSpec]:
    cfg = model.cfg
    kv = tf.TensorSpec([cfg.n_layers, batch, cfg.max_seq_len, cfg.kv_lora_rank], tf.float32, name="kv")
    pe = tf.TensorSpec([cfg.n_layers, batch, cfg.max_seq_len, cfg.qk_rope_head_dim], tf.float32, name="pe")
    return kv, pe


def _model_functions(model: Transformer, export: _Export, sites: list[tuple[tf.Module, str]], batch: int,
                     chunks: Sequence[int]) -> dict:
    """The ``new_cache``, ``prefill`` and ``decode`` concrete functions for one batch size, by signature name."""
    kv_spec, pe_spec = _cache_specs(model, batch)

    def buffers(kv, pe) -> list[_StateBuffer]:
        return [_StateBuffer(x) for pair in zip(tf.unstack(kv), tf.unstack(pe)) for x in pair]  # [k0, p0, k1, ..]

    def state(bufs: list[_StateBuffer]) -> dict:
        return {"kv": tf.stack([b.value for b in bufs[0::2]]), "pe": tf.stack([b.value for b in bufs[1::2]])}

    def prefill(tokens, start, kv, pe):
        bufs = buffers(kv, pe)
        with _dequantized(sites, export.blocks()):
            h, _ = model.hidden_states(tokens, _StateCache(bufs), start)                 # [B, c, D]
            logits = model.logits(h)                                                   # [B, c, V]
        return {"logits": logits, **state(bufs)}

    def decode(tokens, pos, kv, pe):
        bufs = buffers(kv, pe)
        with _dequantized(sites, export.blocks()):
            # One signature serves every position, so it reads the whole cache (read_len = max_seq_len): a
            # SavedModel signature cannot pick a length bucket per call the way Transformer.decode does.
            logits = model._decode_impl(tokens, pos, CacheMode.ABSORB, bufs, model.cfg.max_seq_len)  # [B, V]
        return {"logits": logits, **state(bufs)}

    def new_cache():
        return {"kv": tf.zeros(kv_spec.shape, tf.float32), "pe": tf.zeros(pe_spec.shape, tf.float32)}

    fns = {f"new_cache_b{batch}": tf.function(new_cache).get_concrete_function()}
    for c in chunks:
        fn = tf.function(prefill, jit_compile=True, autograph=False)
        fns[f"prefill_b{batch}_t{c}"] = fn.get_concrete_function(
            tf.TensorSpec([batch, c], tf.int32, name="tokens"), tf.TensorSpec([], tf.int32, name="start"),
            kv_spec, pe_spec)
    fn = tf.function(decode, jit_compile=True, autograph=False)
    fns[f"decode_b{batch}"] = fn.get_concrete_function(
        tf.TensorSpec([batch], tf.int32, name="tokens"), tf.TensorSpec([], tf.int32, name="pos"),
        kv_spec, pe_spec)
    return fns


def _tokenizer_functions() -> dict:
    byte_table = tf.constant([bytes([i]) for i in range(BYTE_VOCAB)])                  # [256] one-byte strings

    @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="text")])
    def tokenize(text):
        return {"ids": byte_ids(text)}                                                 # [n]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="ids")])
    def detokenize(ids):
        return {"text": tf.strings.reduce_join(tf.gather(byte_table, ids))}            # []

    return {"tokenize": tokenize.get_concrete_function(), "detokenize": detokenize.get_concrete_function()}


def _check_args(model: Transformer, batch_sizes: Sequence[int], chunks: Sequence[int]) -> None:
    if not isinstance(model, Transformer):
        raise ExportError(f"export_savedmodel needs a tf_impl Transformer, got {type(model).__name__}")
    cfg = model.cfg
    for name, values, top in (("batch_sizes", batch_sizes, cfg.max_batch_size), ("chunks", chunks, cfg.max_seq_len)):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top for v in values):
            raise ExportError(f"{name}={list(values)} must be a non-empty list of integers in [1, {top}] "
                              f"(the config's {'max_batch_size' if name == 'batch_sizes' else 'max_seq_len'})")
        if len(set(values)) != len(values):
            raise ExportError(f"{name}={list(values)} repeats a value; list each once")
    if 1 in chunks:
        raise ExportError("chunks must not contain 1: single tokens go through the decode signature")


def metadata(model: Transformer, batch_sizes: Sequence[int], chunks: Sequence[int], fp8_weights: int) -> dict:
    """The description a TF-only server reads: config, shapes, signature names, tokenizer, weight storage.

    Args:
        model: the exported model (its config is recorded).
        batch_sizes: the batch sizes with their own signatures.
        chunks: the prefill chunk lengths with their own signatures.
        fp8_weights: how many linear weights are stored in FP8 (0 for a bf16 model).

    Returns:
        a JSON-ready dict, written as the export's metadata file.
    """
    cfg = model.cfg
    return {
        "format": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "batch_sizes": sorted(batch_sizes),
        "chunks": sorted(chunks, reverse=True),
        "vocab_size": cfg.vocab_size,
        "max_seq_len": cfg.max_seq_len,
        "cache": {"mode": "absorb", "kv": ["L", "B", cfg.max_seq_len, cfg.kv_lora_rank],
                  "pe": ["L", "B", cfg.max_seq_len, cfg.qk_rope_head_dim], "layers": cfg.n_layers},
        "tokenizer": {"kind": "bytes", "vocab": BYTE_VOCAB},
        "dtype": cfg.dtype.value,
        "fp8_weights": fp8_weights,
        "signatures": {"new_cache": "new_cache_b{B}", "prefill": "prefill_b{B}_t{c}", "decode": "decode_b{B}",
                       "tokenize": "tokenize", "detokenize": "detokenize"},
    }


def export_savedmodel(model: Transformer, path: str | os.PathLike, *, batch_sizes: Sequence[int] | None = None,
                      chunks: Sequence[int] = DEFAULT_CHUNKS, force: bool = False) -> Path:
    """Write ``model`` as a SavedModel with the serving signatures of this module's docstring.

    Args:
        model: the Transformer to export (its current weights; FP8 configs export FP8 blocks and scales).
        path: the SavedModel directory to create.
        batch_sizes: batch sizes to trace (a server pads a batch up to the next one); default
            ``(cfg.max_batch_size,)``.
        chunks: prefill chunk lengths, each in [2, max_seq_len]; default (64, 8).
        force: replace an existing ``path`` (the old one is removed only after the new one is complete).

    Returns:
        the directory written. An existing ``path`` without ``force`` is an ExportError.
    """
    batch_sizes = tuple(batch_sizes or (model.cfg.max_batch_size,))
    chunks = tuple(chunks)
    _check_args(model, batch_sizes, chunks)
    out = Path(path)
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; choose another path or pass force=True (--force) to replace it")
    sites = _fp8_sites(model)
    export = _Export(model, sites)
    signatures = _tokenizer_functions()
    for b in batch_sizes:
        signatures.update(_model_functions(model, export, sites, b, chunks))
    for name, fn in signatures.items():
        setattr(export, name, fn)  # tracked, so `tf.saved_model.load(path).<name>` works beside the signatures
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tf.saved_model.save(export, str(tmp), signatures=signatures)
        (tmp / METADATA).parent.mkdir(exist_ok=True)
        (tmp / METADATA).write_text(json.dumps(metadata(model, batch_sizes, chunks, len(sites)), indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out

