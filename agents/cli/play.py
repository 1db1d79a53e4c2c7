"""``hlmat play``: annotate in the env from a browser page (episodes recorded), or replay a trajectory file."""
from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat play`` and its flags."""
    p = subparsers.add_parser(
        "play", help="annotate in the env from a browser page (human trajectories recorded), or --replay a file",
        description="Serve a local page where you annotate samples with clicks: the server steps HLMATEnv and "
                    "records every finished episode to DIR/human-SESSION.jsonl (the schema of hlmat generate, "
                    "plus per-click timestamps). Open the printed address (it holds a random session token). "
                    "With --replay FILE, step through any trajectory file click by click instead.")
    p.add_argument("--dataset", default=None,
                   help="dataset spec (default: synthetic:val; with --replay: only for records without one)")
    p.add_argument("--segmenter", default="default", help="segmenter name (default: default)")
    p.add_argument("--out", default=None, help="folder of the recordings (required unless --replay)")
    p.add_argument("--replay", default=None, metavar="FILE",
                   help="a trajectory file (JSONL, a folder of them, or SegAgent JSON) to step through")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes the page)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any free port)")
    p.add_argument("--start", choices=("empty", "box"), default="empty",
                   help="start state of every episode (default: empty)")
    p.add_argument("--max-clicks", type=int, default=20, help="click budget per episode (default: 20)")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples")
    p.add_argument("--show-iou", action="store_true",
                   help="show the IoU after every click (practice); by default only after finish")
    p.add_argument("--token", default=None, help=argparse.SUPPRESS)  # tests: a known token
    return p


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: any free port) and listening, so that the printed address
    accepts connections before the server has started (they wait in the backlog)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        from hlmat_env.errors import HLMATError

        raise HLMATError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port (0: any free one)")
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    """Build the session (or the replay source), print the address and serve until interrupted."""
    from hlmat_env.errors import HLMATError, require

    require("fastapi", "play")
    uvicorn = require("uvicorn", "play")
    from agents.play.app import create_app, new_token

    token = args.token or new_token()
    if args.replay:
        from agents.play.replay import ReplaySource

        app = create_app(replay=ReplaySource(args.replay, dataset=args.dataset), token=token)
        what = f"replaying {args.replay}"
    else:
        if not args.out:
            raise HLMATError("--out DIR is required (where the episodes are recorded), unless --replay FILE")
        from agents.play.session import PlayConfig, PlaySession

        cfg = PlayConfig(dataset=args.dataset or "synthetic:val", out=args.out, segmenter=args.segmenter,
                         start=args.start, max_clicks=args.max_clicks, limit=args.limit, show_iou=args.show_iou)
        session = PlaySession(cfg)
        app = create_app(session, token=token)
        what = f"recording to {session.writer.path} (session {session.session_id})"
        if not session.u.caption and cfg.start == "empty":
            print("hlmat play: note: this sample has no description; with --start box the page shows which "
                  "object to annotate", file=sys.stderr, flush=True)
    sock = listening_socket(args.host, args.port)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"hlmat play: {what}", flush=True)
    if args.host not in LOCAL_HOSTS:
        print(f"hlmat play: warning: bound to {args.host}: other machines can reach this page (the token is "
              "still required)", file=sys.stderr, flush=True)
    print(f"hlmat play: open http://{shown}:{port}/?token={token}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0
