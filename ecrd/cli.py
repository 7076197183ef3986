"""``ecrd``: run the daemon in the foreground, or check a config file."""

from __future__ import annotations

import argparse
import os
import sys

import trio

from ecrd import __version__, config_checks, logs, ownership
from ecrd.config import Config, ConfigError, LanTerminal, SerialTerminal, load

DEFAULT_CONFIG = "/etc/ecrd/ecrd.toml"
EPILOG = (
    "exit status: 0 stopped cleanly; 2 cannot start (a config or state problem, said in one "
    "line: 'ecrd: cannot start: ...'; systemd does not restart it). check-config: 0 valid "
    "(warnings are said), 2 not valid: each problem names its key."
)


def path_problems(cfg: Config, *, owner: bool = True) -> list[str]:
    """What on disk would stop ``ecrd run`` with this config (ecrd/ownership.py)."""
    found = [
        ownership.directory_problem(
            os.path.dirname(cfg.daemon.socket) or ".", ownership.SOCKET_DIR_MODE, owner=owner
        ),
        ownership.directory_problem(cfg.daemon.state_dir, ownership.STATE_DIR_MODE, owner=owner),
        ownership.socket_path_problem(cfg.daemon.socket),
    ]
    return [p for p in found if p is not None]


def _check(path: str) -> int:
    try:
        cfg = load(path)
    except ConfigError as exc:
        print(f"ecrd: {exc}", file=sys.stderr)
        return 2
    # Owners are not checked: check-config may run as another user than ecrd.
    problems = [f"{path}: {p}" for p in path_problems(cfg, owner=False)]
    found = config_checks.findings(cfg)
    problems += [f"{path}: {f.key}: {f.message}" for f in found if f.error]
    warnings = [f"{f.key}: {f.message}" for f in found if not f.error]
    if problems:
        for line in problems:
            print(f"ecrd: {line}", file=sys.stderr)
        for line in warnings:
            print(f"ecrd: warning: {line}", file=sys.stderr)
        return 2
    print(f"{path}: OK")
    print(f"  socket     {cfg.daemon.socket} (group {cfg.daemon.socket_group or 'default'})")
    print(f"  state_dir  {cfg.daemon.state_dir}")
    for t in cfg.terminals:
        where = "cloud relay"
        if isinstance(t, LanTerminal):
            where = f"{t.host}:{t.port}"
        elif isinstance(t, SerialTerminal):
            where = t.device
        fallback = f", fallback {t.fallback}" if t.fallback else ""
        print(f"  terminal   {t.id}: {t.transport} {where}{fallback}")
        if "cloud" in t.links and not cfg.cloud.command_url:
            print(
                f"  warning    {t.id} uses the cloud link but [cloud].command_url is not set: "
                "cloud commands will fail with cloud_not_configured",
            )
    for line in warnings:
        print(f"  warning    {line}")
    if not cfg.terminals:
        print("  warning    no [[terminal]] configured")
    return 0


def parser() -> argparse.ArgumentParser:
    """``ecrd``'s command line; the man page and the shell completions are made from it
    (ecrd/docgen)."""
    p = argparse.ArgumentParser(
        prog="ecrd",
        description="Connects point-of-sale apps to Wonder payment terminals.",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version", version=f"ecrd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run the daemon in the foreground (systemd runs this)"),
        ("check-config", "validate a config file and the files and devices it names"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "--config", "-c", default=DEFAULT_CONFIG, help="the config file (default %(default)s)"
        )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "check-config":
        return _check(args.config)
    return _run(args.config)


def _run(path: str) -> int:
    """Start-up failures are one line, ``ecrd: cannot start: ...``; a config or state
    problem exits with status 2, which the unit's RestartPreventExitStatus= does not retry."""
    try:
        cfg = load(path)
        problems = path_problems(cfg)
        if problems:
            raise ownership.CannotStart(problems[0])
    except (ConfigError, ownership.CannotStart) as exc:
        print(f"ecrd: cannot start: {exc}", file=sys.stderr)
        return 2
    logs.setup(cfg.daemon.log_level)
    from ecrd.daemon import main as run_daemon

    failure: Exception | None = None
    try:
        trio.run(run_daemon, cfg)
    except ownership.CannotStart as exc:
        failure, status = exc, 2
    except OSError as exc:  # e.g. the socket or the state directory is in use: cannot start
        failure, status = exc, 2
    finally:
        logs.stop()  # every queued line is written before the last word below
    if failure is None:
        return 0
    print(f"ecrd: cannot start: {failure}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
