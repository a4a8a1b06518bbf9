"""Write the shipped learnable corpus: structured synthetic text a tiny byte-level model learns in minutes.

Run ``python data/corpus/generate.py`` to regenerate ``synthetic.txt``; the output depends only on the
seed, so the file in the repository is exactly what this script writes (a test checks it).
Every line comes from a small deterministic grammar, so most bytes are predictable from the bytes
before them: words from short fixed lists, counting runs, the alphabet, repeated call-and-response
pairs and small additions. That is what lets a Multi-Token-Prediction draft of the next-next byte
become accurate after short training.
"""

from __future__ import annotations

import os
import random

SEED = 0
TARGET_BYTES = 240_000
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "synthetic.txt")

ADJECTIVES = ["red", "blue", "green", "small", "large", "quiet", "happy", "old"]
NOUNS = ["cat", "dog", "fox", "bird", "fish", "horse", "mouse", "tiger"]
VERBS = ["sees", "chases", "likes", "follows", "finds", "helps"]
PAIRS = [("ping", "pong"), ("tick", "tock"), ("open", "close"), ("day", "night"), ("up", "down")]
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def sentence(rng: random.Random) -> str:
    a1, a2 = rng.choice(ADJECTIVES), rng.choice(ADJECTIVES)
    n1, n2 = rng.choice(NOUNS), rng.choice(NOUNS)
    return f"the {a1} {n1} {rng.choice(VERBS)} the {a2} {n2}."


def counting(rng: random.Random) -> str:
    start = rng.randrange(0, 90)
    return "count: " + " ".join(str(i) for i in range(start, start + rng.randrange(4, 10)))


def alphabet(rng: random.Random) -> str:
    start = rng.randrange(0, 16)
    return "letters: " + " ".join(ALPHABET[start : start + rng.randrange(5, 11)])


def call_response(rng: random.Random) -> str:
    a, b = rng.choice(PAIRS)
    return " ".join([f"{a} {b}"] * rng.randrange(2, 5))


def addition(rng: random.Random) -> str:
    x, y = rng.randrange(0, 50), rng.randrange(0, 50)
    return f"{x} + {y} = {x + y}"


LINES = [sentence, sentence, sentence, counting, alphabet, call_response, addition]


def generate(seed: int = SEED, target_bytes: int = TARGET_BYTES) -> str:
    """The corpus text: lines from ``LINES`` drawn with a seeded RNG until ``target_bytes`` is reached."""
    rng = random.Random(seed)
    lines, size = [], 0
    while size < target_bytes:
        line = rng.choice(LINES)(rng)
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    with open(OUT, "w", encoding="ascii") as f:
        f.write(generate())
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")
