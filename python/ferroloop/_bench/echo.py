"""The network benchmarks' echo load generator and floor server, over the extension's
``_echo_client`` / ``_echo_server`` (``src/bench/``, GIL released while they run).

    python -m ferroloop._bench.echo server (--tcp HOST:PORT | --unix PATH | --udp HOST:PORT)
    python -m ferroloop._bench.echo server --protocol --tcp HOST:PORT
    python -m ferroloop._bench.echo client (--tcp ADDR | --unix PATH | --udp ADDR)
                                           [--conns C] [--size S] [--warmup W] [--duration D]

``server --protocol`` is the floor's loop calling a Python ``data_received`` per read
(``_echo_server_protocol``): the floor plus the cost of Python's protocol call, no event loop.
``server`` prints ``READY KIND ADDRESS`` once listening and serves until killed (Ctrl-C
works). ``client`` prints ``WINDOW`` when its measuring window opens (after the warm-up; the
driver samples the server's CPU from there), then one JSON line: ``msgs``, ``secs``,
``msgs_per_s``, ``mib_per_s``, ``client_cpu`` (its CPU time over the window / the window),
``conns``, ``size``, ``resent``, ``stale``. Exit status 1 with the error on stderr if a
connection fails or an echo differs from what was sent.
"""

import argparse
import json
import sys

from ferroloop._ferroloop import _echo_client, _echo_server, _echo_server_protocol


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m ferroloop._bench.echo",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("role", choices=("server", "client"))
    where = ap.add_mutually_exclusive_group(required=True)
    for kind in ("tcp", "unix", "udp"):
        where.add_argument(f"--{kind}", metavar="ADDRESS")
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--protocol", action="store_true",
                    help="server, TCP: call a Python protocol's data_received per read "
                         "(the floor plus Python's protocol call, no event loop)")
    a = ap.parse_args(argv)
    kind = next(k for k in ("tcp", "unix", "udp") if getattr(a, k) is not None)
    addr = getattr(a, kind)

    def say(line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        if a.role == "server" and a.protocol:
            if kind != "tcp":
                ap.error("--protocol serves TCP only")
            # The benchmark servers' asyncio.Protocol echo, called by the floor's own loop.
            from ferroloop._bench.servers import EchoProtocol
            _echo_server_protocol(addr, EchoProtocol, lambda k, where: say(f"READY {k} {where}"))
        elif a.role == "server":
            _echo_server(kind, addr, lambda k, where: say(f"READY {k} {where}"))
        else:
            res = _echo_client(kind, addr, a.conns, a.size, a.warmup, a.duration,
                               lambda: say("WINDOW"))
            say(json.dumps(res))
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        print(f"echo {a.role}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
