"""A client of an exported SavedModel that imports TensorFlow and nothing of this project (run as a script).

``python tf_only_client.py EXPORT_DIR PROMPT.npy N_NEW OUT.npz``: loads the export with
``tf.saved_model.load``, reads its ``assets.extra/serving.json``, then
- feeds the prompt token by token through ``decode_b{B}`` and keeps every step's logits ("decode_logits");
- feeds it again in chunks (the longest exported chunk first, the rest through decode) and keeps the
  prompt's logits ("prefill_logits"), then decodes N_NEW greedy tokens ("tokens");
- records which of this project's packages ended up imported ("project_modules": must stay empty).
"""

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf


def main(export_dir: str, prompt_file: str, n_new: int, out: str) -> None:
    meta = json.loads((Path(export_dir) / "assets.extra" / "serving.json").read_text())
    fns = tf.saved_model.load(export_dir).signatures
    prompt = np.load(prompt_file).astype(np.int32)                          # [B, T]
    b, t = prompt.shape
    decode, new_cache = fns[f"decode_b{b}"], fns[f"new_cache_b{b}"]

    state = new_cache()
    step_logits = []
    for i in range(t):
        res = decode(tokens=tf.constant(prompt[:, i]), pos=tf.constant(i), **state)
        state = {"kv": res["kv"], "pe": res["pe"]}
        step_logits.append(res["logits"].numpy())

    state, pos, chunk_logits = new_cache(), 0, []
    while pos < t:
        c = next((c for c in meta["chunks"] if c <= t - pos), 1)
        if c == 1:
            res = decode(tokens=tf.constant(prompt[:, pos]), pos=tf.constant(pos), **state)
            chunk_logits.append(res["logits"].numpy()[:, None])
        else:
            res = fns[f"prefill_b{b}_t{c}"](tokens=tf.constant(prompt[:, pos:pos + c]), start=tf.constant(pos), **state)
            chunk_logits.append(res["logits"].numpy())
        state, pos = {"kv": res["kv"], "pe": res["pe"]}, pos + c
    logits = np.concatenate(chunk_logits, 1)                                 # [B, T, V]
    nxt, tokens = logits[:, -1].argmax(-1).astype(np.int32), []
    for _ in range(n_new):
        tokens.append(nxt)
        res = decode(tokens=tf.constant(nxt), pos=tf.constant(pos), **state)
        state, pos = {"kv": res["kv"], "pe": res["pe"]}, pos + 1
        nxt = res["logits"].numpy().argmax(-1).astype(np.int32)
    project = sorted({m.split(".")[0] for m in sys.modules} & {"tf_impl", "harness", "reference", "serving",
                                                                 "experiments", "benchmarks"})
    np.savez(out, decode_logits=np.stack(step_logits, 1), prefill_logits=logits, tokens=np.stack(tokens, 1),
             project_modules=np.array(",".join(project)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
