"""``python -m ecrd.docgen OUTDIR``: the man pages and completions, laid out as installed.
(``python -m ecrd.docgen openrpc``: the API's OpenRPC document and the clients made from
it, in the repository: ``api_files.py``.)

    OUTDIR/man/man8/ecrd.8      OUTDIR/bash-completion/completions/ecrd, ecrctl
    OUTDIR/man/man1/ecrctl.1    OUTDIR/zsh/vendor-completions/_ecrd, _ecrctl
    OUTDIR/man/man5/ecrd.toml.5

``python -m ecrd.docgen --keys docs/config.md`` writes the table of config keys instead.

The date on the pages is SOURCE_DATE_EPOCH's (the last commit's, from scripts/build-deb), so
building the same sources twice makes the same pages.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ecrd import cli, ctl
from ecrd.docgen import api_files, completion, config_doc, man, model


def pages(example: str, date: str) -> dict[str, str]:
    """Each file's path under OUTDIR and its text."""
    ecrd_cmd = model.read(cli.parser())
    ecrctl_cmd = model.read(ctl.parser())
    doc = config_doc.read(example)
    files = {
        "man/man8/ecrd.8": man.program_page(ecrd_cmd, 8, man.ECRD, date),
        "man/man1/ecrctl.1": man.program_page(ecrctl_cmd, 1, man.ECRCTL, date),
        "man/man5/ecrd.toml.5": man.config_page(doc, date),
    }
    for cmd in (ecrd_cmd, ecrctl_cmd):
        files[f"bash-completion/completions/{cmd.name}"] = completion.bash(cmd)
        files[f"zsh/vendor-completions/_{cmd.name}"] = completion.zsh(cmd)
    return files


def build_date() -> str:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["openrpc"]:
        return api_files.main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m ecrd.docgen", description=__doc__)
    p.add_argument("outdir", type=Path, nargs="?")
    p.add_argument("--example", type=Path, default=Path("etc/ecrd.toml"), help="the config")
    p.add_argument("--keys", type=Path, help="write only the key table (docs/config.md) here")
    args = p.parse_args(argv)
    if args.outdir is None and args.keys is None:
        p.error("give OUTDIR, or --keys FILE")
    try:
        example = args.example.read_text(encoding="utf-8")
        if args.keys is not None:
            args.keys.write_text(config_doc.markdown(config_doc.read(example)), encoding="utf-8")
            return 0
        files = pages(example, build_date())
    except config_doc.ConfigDocError as exc:
        print(f"ecrd.docgen: {exc}", file=sys.stderr)
        return 1
    for name, text in files.items():
        path = args.outdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
