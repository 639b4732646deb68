"""Command line of ferroloop (``python -m ferroloop`` or the ``ferroloop`` script):

  run SCRIPT [ARGS...]       run a Python script as ``python SCRIPT ARGS`` would, with
  run -m MODULE [ARGS...]    ferroloop as every new asyncio loop (``ferroloop.install()``)
  bench [--quick] ...        benchmark ferroloop against asyncio, uvloop, rloop
  info                       versions in use
  --version                  ferroloop's version
"""

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
        # As `python -m`: the working directory first on sys.path (in place of this
        # program's own entry: the console script's directory, or `-m ferroloop`'s cwd).
        sys.path[0] = os.getcwd()
        runpy.run_module(args.script, run_name="__main__", alter_sys=True)
    else:
        # As `python SCRIPT`: the script's directory first on sys.path.
        sys.path[0] = os.path.dirname(os.path.abspath(args.script))
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


def _bench(args: argparse.Namespace) -> int:
    from ferroloop._bench import cli

    try:
        return cli.run(args)
    except BrokenPipeError:  # `ferroloop bench --list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _version() -> str:
    import ferroloop

    return f"ferroloop {ferroloop.__version__}"


def main(argv: list[str] | None = None) -> int:
    prog = "python -m ferroloop" if sys.argv[0].endswith("__main__.py") else "ferroloop"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a Python script (or -m module) on ferroloop")
    run.add_argument("-m", dest="module", action="store_true", help="SCRIPT is a module name")
    run.add_argument("script", help="path of the script (or module name with -m)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    run.set_defaults(func=_run)
    bench = sub.add_parser("bench", help="benchmark ferroloop against other loops",
                           description="Run every benchmark workload (scheduling and "
                           "networking) on each loop, each in fresh processes; print "
                           "ops/s and ratios; optionally save JSON and a PNG chart.")
    from ferroloop._bench import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=_bench)
    info = sub.add_parser("info", help="print versions")
    info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
