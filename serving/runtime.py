"""Greedy generation from an exported SavedModel, with TensorFlow alone (no code of this project's model).

``ServingModel`` loads a directory written by ``tf_impl.export.export_savedmodel`` with
``tf.saved_model.load`` and reads its ``assets.extra/serving.json``. It checks requests against the
export (vocabulary, context length) and runs batches: the rows of one batch share a prompt length
(the signatures have static shapes and no padding mask, and right-padding a prompt would make its
later decode steps attend to the padding), so ``generate`` groups requests by prompt length, pads
each group's batch up to the next exported batch size with copies of its first row (rows do not
interact: routing and attention are per token and per sequence), feeds the prompts chunk by chunk
(``chunk_plan``: the longest exported chunk first, single tokens through ``decode``), then decodes
greedily until every row has its ``max_tokens``. The KV cache is the explicit state the signatures
take and return; nothing is kept between batches.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

METADATA = Path("assets.extra") / "serving.json"
SUPPORTED_FORMAT = 1


class RequestError(ValueError):
    """A request this model cannot serve; ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    """One completion request: prompt token ids, how many tokens to generate, when it arrived (unix s)."""

    prompt: list[int]
    max_tokens: int
    arrived: float = field(default_factory=time.time)


@dataclass
class Completion:
    """The answer to one Request: new token ids and the server-side timings (unix seconds)."""

    tokens: list[int]
    started: float          # its batch began computing
    first_token: float      # its first new token was known (end of its prompt's prefill)
    finished: float
    batch_size: int         # requests computed together in its group (before padding)


def chunk_plan(length: int, chunks: Sequence[int]) -> list[int]:
    """Chunk lengths that feed a ``length``-token prompt: longest exported chunk first, then ones (decode).

    ``tf_impl.export``'s docstring states the same plan; it lives here, with the server that feeds the chunks.
    """
    plan: list[int] = []
    for c in sorted(chunks, reverse=True):
        plan += [c] * (length // c)
        length %= c
    return plan + [1] * length


REEXPORT = "write it again with `python -m harness serve export --out DIR --force`"


class ExportInvalid(ValueError):
    """A serving export that exists but cannot be served: corrupt or incomplete files, or another format."""


def read_metadata(path: str | os.PathLike) -> dict:
    """The export's ``assets.extra/serving.json``; a clear error when ``path`` is not a serving export."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{path} does not exist or is not a directory; give the directory written by "
                                "`python -m harness serve export --out DIR`")
    meta_file = Path(path) / METADATA
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path} is not a serving export (no {METADATA}); write one with "
                                "`python -m harness serve export --out DIR`")
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportInvalid(f"{meta_file} is not valid JSON ({exc}): the export is corrupt; {REEXPORT}") from None
    if not isinstance(meta, dict) or meta.get("format") != SUPPORTED_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ExportInvalid(f"{meta_file} has format {found!r}; this server reads format "
                            f"{SUPPORTED_FORMAT}: export the model again with this version")
    return meta


def check_export(path: str | os.PathLike) -> dict:
    """The export's metadata, once its files are where a SavedModel has them and ``saved_model.pb`` parses.

    Cheap (no weights are read): the CLI runs it before starting a cluster, so a missing or corrupt export
    is refused in a second, not after a replica failed to load it three times. Raises FileNotFoundError
    (not an export) or ExportInvalid (corrupt or incomplete), each naming the file and the fix.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    meta = read_metadata(path)
    graph = Path(path) / "saved_model.pb"
    index = Path(path) / "variables" / "variables.index"
    for needed in (graph, index):
        if not needed.is_file():
            raise ExportInvalid(f"{path} lacks {needed.relative_to(path)}: the export is incomplete; {REEXPORT}")
    if not list(index.parent.glob("variables.data-*")):
        raise ExportInvalid(f"{path} lacks its weights (variables/variables.data-*): the export is incomplete; "
                            f"{REEXPORT}")
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(graph.read_bytes())
    except DecodeError as exc:
        raise ExportInvalid(f"{graph} does not parse as a SavedModel ({exc}): the export is corrupt; "
                            f"{REEXPORT}") from None
    if not saved.meta_graphs:
        raise ExportInvalid(f"{graph} holds no graph (an empty or truncated file): the export is corrupt; {REEXPORT}")
    return meta


class ServingModel:
    """A loaded export: request checks, tokenizer and batched greedy generation."""

    def __init__(self, path: str | os.PathLike):
        self.meta = check_export(path)
        self.path = Path(path)
        try:
            self.loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # noqa: BLE001 (TF raises many kinds for damaged files; all mean the same here)
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            raise ExportInvalid(f"TensorFlow cannot load the SavedModel in {path} ({type(exc).__name__}: {first}): "
                                f"its files are corrupt or incomplete; {REEXPORT}") from None
        self.fns = dict(self.loaded.signatures)
        self.batch_sizes: list[int] = sorted(self.meta["batch_sizes"])
        self.chunks: list[int] = list(self.meta["chunks"])
        self.vocab_size: int = int(self.meta["vocab_size"])
        self.max_seq_len: int = int(self.meta["max_seq_len"])
        self.byte_vocab: int = int(self.meta["tokenizer"]["vocab"])
        names = ["tokenize", "detokenize"]
        for b in self.batch_sizes:
            names += [f"new_cache_b{b}", f"decode_b{b}"] + [f"prefill_b{b}_t{c}" for c in self.chunks]
        missing = [n for n in names if n not in self.fns]
        if missing:
            raise ExportInvalid(f"the SavedModel in {path} lacks the signatures {missing} that its {METADATA} "
                                f"lists: the files do not belong together; {REEXPORT}")

    # ------------------------------------------------------------------ requests
    def check(self, prompt: Sequence[int], max_tokens: int) -> None:
        """Raise RequestError (400) naming the problem when the model cannot serve this request.

        ``prompt`` must already be a list of ints and ``max_tokens`` an int >= 1 (the HTTP layer checks types).
        """
        if not prompt:
            raise RequestError("prompt is empty: give at least one token id (or one character of text)")
        lo, hi = min(prompt), max(prompt)
        if lo < 0 or hi >= self.vocab_size:
            bad = lo if lo < 0 else hi
            raise RequestError(f"prompt holds token id {bad}, outside [0, vocab_size={self.vocab_size}); "
                               "send ids the model's vocabulary has")
        if len(prompt) + max_tokens > self.max_seq_len:
            raise RequestError(f"prompt of {len(prompt)} tokens + max_tokens={max_tokens} exceeds the context of "
                               f"{self.max_seq_len} tokens; shorten the prompt or ask for fewer tokens")

    def tokenize(self, text: str) -> list[int]:
        """The byte tokenizer exported with the model: UTF-8 bytes of ``text`` as ids."""
        return self.fns["tokenize"](text=tf.constant(text.encode("utf-8")))["ids"].numpy().tolist()

    def detokenize(self, ids: Sequence[int]) -> str | None:
        """Text of byte ids (invalid UTF-8 replaced), or None when an id is not a byte (the model's vocabulary
        is larger than the tokenizer's)."""
        if any(not 0 <= i < self.byte_vocab for i in ids):
            return None
        raw = self.fns["detokenize"](ids=tf.constant(list(ids), tf.int32))["text"].numpy()
        return raw.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ generation
    def bucket(self, n: int) -> int:
        """The smallest exported batch size holding ``n`` rows."""
        return next((b for b in self.batch_sizes if b >= n), self.batch_sizes[-1])

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """Greedy completions of ``requests`` (checked beforehand), in their order."""
        out: list[Completion | None] = [None] * len(requests)
        by_length: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            by_length.setdefault(len(r.prompt), []).append(i)
        top = self.batch_sizes[-1]
        for indices in by_length.values():
            for k in range(0, len(indices), top):
                group = indices[k:k + top]
                for i, done in zip(group, self._group([requests[i] for i in group])):
                    out[i] = done
        return out  # type: ignore[return-value]

    def _group(self, requests: Sequence[Request]) -> list[Completion]:
        """One batch of requests with the same prompt length."""
        started = time.time()
        n, b = len(requests), self.bucket(len(requests))
        prompts = np.array([r.prompt for r in requests], np.int32)                        # [n, T]
        prompts = np.concatenate([prompts, np.repeat(prompts[:1], b - n, 0)])              # [B, T]
        state = self.fns[f"new_cache_b{b}"]()
        kv, pe = state["kv"], state["pe"]
        pos = 0
        for c in chunk_plan(prompts.shape[1], self.chunks):
            if c == 1:
                res = self.fns[f"decode_b{b}"](tokens=tf.constant(prompts[:, pos]), pos=tf.constant(pos),
                                               kv=kv, pe=pe)
                last = res["logits"]                                                       # [B, V]
            else:
                res = self.fns[f"prefill_b{b}_t{c}"](tokens=tf.constant(prompts[:, pos:pos + c]),
                                                     start=tf.constant(pos), kv=kv, pe=pe)
                last = res["logits"][:, -1]                                                # [B, V]
            kv, pe, pos = res["kv"], res["pe"], pos + c
        nxt = np.argmax(last.numpy(), -1).astype(np.int32)                                 # [B]
        first_token = time.time()
        new = [nxt]
        for _ in range(max(r.max_tokens for r in requests) - 1):
            res = self.fns[f"decode_b{b}"](tokens=tf.constant(nxt), pos=tf.constant(pos), kv=kv, pe=pe)
            kv, pe, pos = res["kv"], res["pe"], pos + 1
            nxt = np.argmax(res["logits"].numpy(), -1).astype(np.int32)
            new.append(nxt)
        tokens = np.stack(new, 1)                                                          # [B, max_tokens]
        finished = time.time()
        return [Completion(tokens[i, :r.max_tokens].tolist(), started, first_token, finished, n)
                for i, r in enumerate(requests)]

    def warm_up(self) -> float:
        """Call every exported function once (XLA compiles each on its first call); returns the seconds taken.

        A replica warms up before it reports ready, so no request pays for a compilation.
        """
        start = time.time()
        for b in self.batch_sizes:
            state = self.fns[f"new_cache_b{b}"]()
            for c in self.chunks:
                self.fns[f"prefill_b{b}_t{c}"](tokens=tf.zeros([b, c], tf.int32), start=tf.constant(0),
                                               **state)["logits"].numpy()
            self.fns[f"decode_b{b}"](tokens=tf.zeros([b], tf.int32), pos=tf.constant(0), **state)["logits"].numpy()
        return time.time() - start
