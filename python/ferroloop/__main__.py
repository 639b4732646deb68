"""Command line: ``python -m ferroloop run SCRIPT [ARGS...]`` runs an asyncio program on
ferroloop (as ``python SCRIPT`` would, with ferroloop installed as asyncio's event loop
policy first); ``python -m ferroloop info`` prints the versions in use."""

from __future__ import annotations

import argparse
import os
import runpy
import sys


def _run(args: argparse.Namespace) -> int:
    import ferroloop

    ferroloop.install()
    sys.argv = [args.script, *args.args]
    if args.module:
        runpy.run_module(args.script, run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
        runpy.run_path(args.script, run_name="__main__")
    return 0


def _info(_args: argparse.Namespace) -> int:
    import asyncio
    import platform

    import ferroloop

    loop = ferroloop.new_event_loop()
    try:
        print(f"ferroloop {ferroloop.__version__}")
        print(f"python {platform.python_version()} ({sys.implementation.name})")
        print(f"loop {type(loop).__module__}.{type(loop).__qualname__}; "
              f"asyncio.AbstractEventLoop: {isinstance(loop, asyncio.AbstractEventLoop)}")
    finally:
        loop.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferroloop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a Python script (or -m module) on ferroloop")
    run.add_argument("-m", dest="module", action="store_true", help="SCRIPT is a module name")
    run.add_argument("script", help="path of the script (or module name with -m)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    run.set_defaults(func=_run)
    info = sub.add_parser("info", help="print versions")
    info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
