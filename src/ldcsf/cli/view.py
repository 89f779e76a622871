"""`ldcsf view`: look at slides, their maps, hotspots and the cohort in a web browser."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "view",
        help="browse the results of `ldcsf slide` over the slides in a web browser",
        description=(
            "Serve OUT (a folder written by `ldcsf slide`, or one slide's folder in it) on a local web server: "
            "a cohort page, and each slide at full resolution with its class map, heatmaps, hotspot and TSR. "
            "Open the printed address in a browser; Ctrl-C stops the server."
        ),
    )
    parser.add_argument("out", metavar="OUT", help="output folder of `ldcsf slide`")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--slides", action="append", default=[], metavar="FOLDER",
                        help="where to look for slide files moved since the run (by file name); may be repeated")
    parser.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..utils.signals import StopRequested
    from ..viewer.outputs import OutputFolder
    from ..viewer.server import ALL_INTERFACES, make_server, server_address

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {args.port}")
    output = OutputFolder(args.out, args.slides)
    for entry in output.entries.values():
        if entry.slide_error:
            print(f"ldcsf view: warning: {entry.slide_id}: {entry.slide_error}", file=sys.stderr)
    server = make_server(output, args.host, args.port)
    for entry in output.entries.values():
        if entry.damaged:  # found while the server read the records: shown as failed
            print(f"ldcsf view: warning: {entry.slide_id}: {entry.error}", file=sys.stderr)
    finished = sum(e.finished for e in output.entries.values())
    print(f"ldcsf view: {len(output.entries)} slide(s) ({finished} with results) from {output.root}")
    address = server_address(server)
    if args.host in ALL_INTERFACES:
        port = server.server_address[1]
        print(f"ldcsf view: warning: --host {args.host or '0.0.0.0'} serves the results, slide paths and slide images "
              "to every machine that can reach this one, without a password; use --host 127.0.0.1 (the default) "
              "unless that is meant", file=sys.stderr)
        address = f"http://127.0.0.1:{port}/ (or this machine's address)"
    print(f"open {address} in a browser (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, StopRequested):  # Ctrl-C or SIGTERM is how a viewer is meant to end
        print("ldcsf view: stopped", file=sys.stderr)
    finally:
        server.server_close()
        server.viewer.close()
    return 0
