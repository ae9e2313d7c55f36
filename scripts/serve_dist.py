"""Serves a built page (dist/) on 127.0.0.1 and prints its address once the server listens.

    python3 scripts/serve_dist.py DIST PORT

Missing files are 404s (the page probes for optional model files), .wasm is application/wasm (streaming
compilation needs it). A port that is taken is an error, not a silent fallback.
"""
import functools
import http.server
import os
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".json": "application/json",
        ".md": "text/markdown; charset=utf-8",
        ".safetensors": "application/octet-stream",
    }


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    dist, port = sys.argv[1], int(sys.argv[2])
    if not os.path.isfile(os.path.join(dist, "index.html")):
        print(f"error: {dist}/index.html is missing: build the page first (scripts/build-web.sh)", file=sys.stderr)
        return 1
    handler = functools.partial(Handler, directory=dist)
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as e:
        print(f"error: cannot listen on 127.0.0.1:{port}: {e}", file=sys.stderr)
        return 1
    print(f"Traverse is served at http://127.0.0.1:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
