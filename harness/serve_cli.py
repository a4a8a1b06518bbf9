"""``python -m harness serve {export,serve,query}``: export a SavedModel, serve it with Ray Serve, query it.

  export  ``tf_impl.export.export_savedmodel`` of a config (``--config tiny|bench|PATH.json``) with weights from
          ``--state PATH.safetensors`` (default: tf_impl's seeded initial weights, said so) into ``--out DIR``;
          an existing DIR is kept unless ``--force``.
  serve   a private Ray cluster on this machine with the completions app for ``--model DIR``, listening on
          ``--host`` (default 127.0.0.1) ``--port`` (default 8000) until Ctrl-C or SIGTERM, then everything
          is shut down. ``--replicas N`` or ``--autoscale MIN:MAX``.
  query   ``POST /v1/completions`` with ``--prompt TEXT`` or ``--tokens 1,2,3`` and ``--max-tokens N``; prints
          the JSON answer.

Exit codes: 0 done; 1 the server answered with an error (the message is printed); 2 bad usage, a missing,
corrupt or existing path, a port in use, a server whose replicas failed to start, or no server at the URL.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from typing import Sequence

DEFAULT_URL = "http://127.0.0.1:8000"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("export", help="write a SavedModel with serving signatures")
    p.add_argument("--config", default="tiny", help="tiny, bench or a ModelConfig JSON file (default: tiny)")
    p.add_argument("--state", help="weights (.safetensors, canonical names); default: tf_impl's seeded init")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights when there is no --state")
    p.add_argument("--out", required=True, help="SavedModel directory to create")
    p.add_argument("--batch-sizes", default=None, help="comma-separated batch sizes to export (default: the "
                                                       "config's max_batch_size)")
    p.add_argument("--chunks", default="64,8", help="comma-separated prefill chunk lengths (default: 64,8)")
    p.add_argument("--force", action="store_true", help="replace an existing --out directory")
    p = sub.add_parser("serve", help="serve an export with Ray Serve until Ctrl-C")
    p.add_argument("--model", required=True, help="a directory written by `serve export`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    p.add_argument("--replicas", type=int, default=1, help="fixed number of replicas (default: 1)")
    p.add_argument("--autoscale", metavar="MIN:MAX", help="let Ray Serve's autoscaler run MIN..MAX replicas")
    p.add_argument("--max-batch-size", type=int, help="requests per batch (default: the export's largest)")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs Ray may use (default: 2)")
    p = sub.add_parser("query", help="ask a running server for a completion")
    p.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default: {DEFAULT_URL})")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--prompt", help="prompt text (byte tokenizer)")
    group.add_argument("--tokens", help="prompt token ids, comma-separated")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens to generate (default: 16)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the answer (default: 300)")
    return parser


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(_fail(f"{what} must be comma-separated integers, got {text!r}")) from None


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cmd_export(args: argparse.Namespace) -> int:
    """Build the model, load ``--state`` if given, export it.

    Args:
        args: the parsed ``export`` options (``--config``, ``--state``, ``--seed``, ``--out``,
            ``--batch-sizes``, ``--chunks``, ``--force``).

    Returns:
        0 when the SavedModel was written; 2 with the error on stderr for a bad config, state or output
        folder (an existing ``--out`` is kept unless ``--force``).
    """
    from harness.config import ConfigError, ModelConfig
    from harness.io import load_safetensors
    from tf_impl.export import ExportError, export_savedmodel
    from tf_impl.model import Transformer

    try:
        cfg = ModelConfig.named(args.config)
        model = Transformer(cfg, seed=args.seed)
        if args.state:
            model.load_state_dict(load_safetensors(args.state), source=args.state)
        else:
            print(f"note: no --state given: exporting tf_impl's initial weights (seed {args.seed}), not a trained "
                  "model", file=sys.stderr)
        batch_sizes = _ints(args.batch_sizes, "--batch-sizes") if args.batch_sizes else None
        out = export_savedmodel(model, args.out, batch_sizes=batch_sizes, chunks=_ints(args.chunks, "--chunks"),
                                force=args.force)
    except (ConfigError, ExportError, ValueError, OSError) as exc:
        return _fail(str(exc))
    print(f"exported {args.config} ({cfg.dtype.value}) to {out}")
    return 0


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the server, block until SIGINT/SIGTERM, shut everything down.

    Args:
        args: the parsed ``serve`` options (``--model``, ``--host``, ``--port``, ``--replicas`` or
            ``--autoscale``, ``--max-batch-size``, ``--num-cpus``).

    Returns:
        0 after a clean shutdown; 2 with the error on stderr when the export is unusable, the port is taken,
        ``--autoscale`` is malformed or the cluster does not start.
    """
    from serving.cluster import DeployFailed, RayStartFailed, start, stop
    from serving.runtime import check_export

    try:
        check_export(args.model)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    if not _port_free(args.host, args.port):
        return _fail(f"port {args.port} on {args.host} is in use; choose another with --port")
    options: dict = {"max_batch_size": args.max_batch_size}
    if args.autoscale:
        lo, _, hi = args.autoscale.partition(":")
        if not (lo.isdigit() and hi.isdigit() and 1 <= int(lo) <= int(hi)):
            return _fail(f"--autoscale must be MIN:MAX with 1 <= MIN <= MAX, got {args.autoscale!r}")
        options["autoscaling"] = {"min_replicas": int(lo), "max_replicas": int(hi),
                                  "target_ongoing_requests": max(1, (args.max_batch_size or 8) // 2)}
    else:
        options["replicas"] = args.replicas
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        server = start(args.model, host=args.host, port=args.port, num_cpus=args.num_cpus, **options)
    except (DeployFailed, RayStartFailed, TimeoutError) as exc:  # start() has shut everything down already
        return _fail(str(exc))
    try:
        print(f"serving {args.model} at {server.url}/v1/completions (Ctrl-C to stop)", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        print("stopping the server", flush=True)
        stop(server)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """POST one completion request and print the answer.

    Args:
        args: the parsed ``query`` options (``--url``, ``--prompt`` or ``--tokens``, ``--max-tokens``,
            ``--timeout``).

    Returns:
        0 when the server answered; 1 when it answered with an HTTP error; 2 when no server answered.
    """
    prompt = args.prompt if args.prompt is not None else _ints(args.tokens, "--tokens")
    body = json.dumps({"prompt": prompt, "max_tokens": args.max_tokens}).encode()
    req = urllib.request.Request(f"{args.url}/v1/completions", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            print(json.dumps(json.loads(resp.read()), indent=2))
            return 0
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            text = json.loads(text).get("error", text)
        except (json.JSONDecodeError, AttributeError):
            pass
        return _fail(f"the server answered {exc.code}: {text}", 1)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return _fail(f"no answer from {args.url} ({getattr(exc, 'reason', exc)}); is a server running? Start one "
                     "with `python -m harness serve serve --model DIR`")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m harness serve``; returns the exit code (see the module docstring)."""
    args = _parser().parse_args(argv)
    try:
        return {"export": cmd_export, "serve": cmd_serve, "query": cmd_query}[args.action](args)
    except SystemExit as exc:
        return int(exc.code or 0)
