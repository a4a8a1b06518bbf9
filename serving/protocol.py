"""The completions API's wire format: parsing a request body, and the answer's JSON.

Kept free of Ray and TensorFlow, so every rule about bad requests is a plain function under test.

Request (``POST /v1/completions``, JSON object):
    ``prompt``: a list of token ids, or a string (encoded by the export's byte tokenizer);
    ``max_tokens``: tokens to generate, an integer >= 1 (default 16). Decoding is greedy.
Answer: ``tokens`` (the new ids), ``text`` (their text, or null when an id is not a byte), ``usage``,
``timing`` (seconds from the request's arrival at the replica: ``queue_s`` until its batch started,
``ttft_s`` until its first new token was known, ``total_s`` until its last; ``batch_size``: requests
computed together; ``started``/``finished``: unix times), and the ``replica`` that served it.
A bad request is answered ``{"error": message}`` with status 400 (413 for an oversized body); the
message names the problem and the fix.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from serving.runtime import Completion, Request, RequestError

DEFAULT_MAX_TOKENS = 16
MAX_BODY_BYTES = 1 << 20      # 1 MiB: a 100k-id prompt written as JSON is < 1 MiB
FIELDS = ("prompt", "max_tokens")
USAGE = 'send a JSON object {"prompt": [token ids] or "text", "max_tokens": n}'


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def body_too_large(length: int, limit: int = MAX_BODY_BYTES) -> RequestError:
    """The 413 error for a body of ``length`` bytes (or more) over ``limit``."""
    return RequestError(f"request body of {length} bytes exceeds the limit of {limit} bytes; send a shorter prompt",
                        status=413)


def parse_request(body: bytes, tokenize: Callable[[str], list[int]], check: Callable[[Sequence[int], int], None],
                  arrived: float) -> Request:
    """A checked Request from a raw body, else RequestError naming what is wrong and how to fix it.

    Args:
        body: the HTTP request body.
        tokenize: text -> token ids (the export's tokenizer).
        check: the model's own check of (prompt ids, max_tokens): vocabulary and context length.
        arrived: when the request arrived (unix seconds), kept for its timings.

    Returns:
        the request, ready for the batch queue.
    """
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"request body is not valid JSON ({exc}); {USAGE}") from None
    if not isinstance(data, dict):
        raise RequestError(f"request body must be a JSON object, got {type(data).__name__}; {USAGE}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s) {unknown}; the fields are {list(FIELDS)}")
    if "prompt" not in data:
        raise RequestError(f"field 'prompt' is missing; {USAGE}")
    prompt = data["prompt"]
    if isinstance(prompt, str):
        ids = tokenize(prompt)
    elif isinstance(prompt, list) and all(_is_int(t) for t in prompt):
        ids = list(prompt)
    else:
        raise RequestError("'prompt' must be a string or a list of integer token ids, got "
                           f"{type(prompt).__name__}" + (" with non-integer items" if isinstance(prompt, list) else ""))
    max_tokens = data.get("max_tokens", DEFAULT_MAX_TOKENS)
    if not _is_int(max_tokens) or max_tokens < 1:
        raise RequestError(f"'max_tokens' must be an integer >= 1, got {max_tokens!r}")
    check(ids, max_tokens)
    return Request(ids, max_tokens, arrived)


def answer(request: Request, done: Completion, text: str | None, replica: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer to ``request`` (see the module docstring)."""
    return {
        "tokens": done.tokens,
        "text": text,
        "usage": {"prompt_tokens": len(request.prompt), "completion_tokens": len(done.tokens)},
        "timing": {"queue_s": done.started - request.arrived, "ttft_s": done.first_token - request.arrived,
                   "total_s": done.finished - request.arrived, "batch_size": done.batch_size,
                   "started": done.started, "finished": done.finished},
        "replica": replica,
    }
