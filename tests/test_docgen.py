"""The man pages and completions follow the declarations (ecrd/docgen): every command, option,
choice and config key ``--help`` and ``check-config`` know is in them, nothing else, and
``man`` renders them without a warning."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ecrd import cli, config, ctl
from ecrd.docgen import completion, config_doc, man, model, roff
from ecrd.docgen.__main__ import pages

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = (ROOT / "etc" / "ecrd.toml").read_text()
DATE = "2026-12-03"
PARSERS = {"ecrd": cli.parser, "ecrctl": ctl.parser}


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return pages(EXAMPLE, DATE)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def flags(parser: argparse.ArgumentParser) -> list[str]:
    return [f for a in parser._actions if a.help != argparse.SUPPRESS for f in a.option_strings]


def roff_flag(flag: str) -> str:
    return flag.replace("-", "\\-")


def test_every_config_key_is_explained_by_the_example() -> None:
    doc = config_doc.read(EXAMPLE)
    expected = {(t, k) for t in config_doc.TABLES for k, *_ in config_doc.declared(t)}
    assert set(config_doc.keys_named(doc)) == expected
    tables = {t.name: t for t in doc.tables}
    assert tables["terminal"].array and not tables["daemon"].array
    keys = {k.name: k for k in tables["daemon"].keys}
    assert keys["socket"].default == '"/run/ecrd/ecrd.sock"'
    assert keys["socket_group"].commented and keys["socket_group"].default == "unset"
    assert keys["client_device_sn"].default is None  # computed: the host name
    terminal = {k.name: k for k in tables["terminal"].keys}
    assert terminal["id"].required and terminal["parity"].text == "N | E | O | M | S"
    assert terminal["action_timeouts"].default == "{}"
    assert (terminal["parity"].only, terminal["crypto"].only) == ('transport = "serial"', "")
    assert keys["socket"].restart and not keys["log_level"].restart


def test_a_key_the_example_leaves_unexplained_stops_the_build() -> None:
    text = EXAMPLE.replace(
        "rtscts = false                   # hardware flow control (RTS/CTS)\n", "rtscts = false\n"
    )
    assert text != EXAMPLE
    with pytest.raises(config_doc.ConfigDocError, match=r"\[terminal\]\.rtscts"):
        config_doc.read(text)


def test_the_key_table_in_docs_is_the_one_the_declarations_make() -> None:
    """docs/config.md is generated (python -m ecrd.docgen --keys docs/config.md)."""
    table = config_doc.markdown(config_doc.read(EXAMPLE))
    assert (ROOT / "docs" / "config.md").read_text() == table
    assert '| `port` | the terminal\'s TCP port (transport = "lan" only) |' in table
    assert "| `socket` | the Unix socket POS apps connect to; restart |" in table


@pytest.mark.parametrize(
    ("key", "typo"),
    [("keep_days = 400", "keep_dayz = 400"), ("# fallback = ", "# fallbak = ")],
)
def test_a_key_config_py_does_not_know_stops_the_build(key: str, typo: str) -> None:
    """Set or commented out: a key line the declarations do not have is an error."""
    with pytest.raises(config_doc.ConfigDocError, match=r"not a key of config\.py"):
        config_doc.read(EXAMPLE.replace(key, typo))


def test_a_comment_after_a_value_is_split_where_the_value_parses() -> None:
    assert config_doc.split_comment('"a # b"  # the comment') == ('"a # b"', "the comment")
    assert config_doc.split_comment("[1, 2]") == ("[1, 2]", "")


def test_the_config_page_names_every_key_with_its_default(files: dict[str, str]) -> None:
    page = files["man/man5/ecrd.toml.5"]
    for table in config_doc.TABLES:
        assert f"[{table}]" in page
        for name, *_ in config_doc.declared(table):
            assert f".TP\n\\fB{roff_flag(name)}\\fR\n" in page, name
    assert 'Default: "/run/ecrd/ecrd.sock".' in page
    assert f"Default: {config.DaemonConfig().max_clients}." in page
    assert "Value: an integer between 1 and 65535." in page
    assert 'Only in a table with transport = "serial".' in page


@pytest.mark.parametrize("program", PARSERS)
def test_the_program_page_has_every_command_option_and_help_text(
    program: str, files: dict[str, str]
) -> None:
    page = files["man/man8/ecrd.8" if program == "ecrd" else "man/man1/ecrctl.1"]
    parser = PARSERS[program]()
    assert page.startswith('.\\"') and f'.TH "{program.upper()}"' in page
    for flag in flags(parser):
        assert roff_flag(flag) in page, flag
    for name, sub in subparsers(parser).items():
        assert f".SS \\fB{roff_flag(name)}\\fR" in page, name
        for action in sub._actions:
            for flag in action.option_strings:
                assert roff_flag(flag) in page, f"{name} {flag}"
            text = model.expand_help(action, sub.prog)
            assert roff.escape(" ".join(text.split())) in page, f"{name} {action.dest}"
            if default := model.default_of(action):
                assert f"(default: {roff.escape(default)})" in page, f"{name} {action.dest}"
    assert '.SH "EXIT STATUS"' in page and roff.escape(parser.epilog or "-") in page


def test_roff_escaping_keeps_text_from_being_read_as_requests() -> None:
    assert roff.escape(".not a request") == "\\&.not a request"
    assert roff.escape("a \\ b `ecrctl tx`") == "a \\e b \\fBecrctl tx\\fR"
    assert roff.escape("x" * 20 + "/" + "y" * 20) == "x" * 20 + "/\\:" + "y" * 20


def test_man_renders_every_page_without_a_warning(files: dict[str, str], tmp_path: Path) -> None:
    if shutil.which("man") is None:
        pytest.skip("needs man (man-db)")
    for name, text in files.items():
        if not name.startswith("man/"):
            continue
        path = tmp_path / Path(name).name
        path.write_text(text)
        proc = subprocess.run(
            ["man", "--warnings", "-E", "UTF-8", "-l", str(path)],
            capture_output=True,
            text=True,
            env={"MANWIDTH": "80", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
            check=False,
        )
        assert (proc.returncode, proc.stderr) == (0, ""), name


def complete(script: str, *words: str) -> list[str]:
    """What bash's completion function offers for the last of ``words``."""
    fn = "_" + words[0]
    driver = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
    driver += fn + '; printf "%s\\n" "${COMPREPLY[@]}"'
    proc = subprocess.run(
        ["bash", "-c", driver, "bash", script, *words],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},  # no ecrctl: no terminal ids
    )
    return [w for w in proc.stdout.splitlines() if w]


@pytest.fixture(scope="module")
def bash_files(files: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("completion")
    for program in PARSERS:
        text = files[f"bash-completion/completions/{program}"]
        (out / program).write_text(text)
    return out


def test_bash_completes_commands_options_and_choices(bash_files: Path, tmp_path: Path) -> None:
    script = str(bash_files / "ecrctl")
    commands = sorted(subparsers(ctl.parser()))
    assert sorted(complete(script, "ecrctl", "")) == commands
    assert complete(script, "ecrctl", "--so") == ["--socket"]
    assert complete(script, "ecrctl", "--socket", "/run/x", "res") == ["resolve"]
    assert complete(script, "ecrctl", "resolve", "REF", "") == ["succeeded", "failed"]
    assert complete(script, "ecrctl", "sale", "--print", "") == ["YES", "NO"]
    assert "--elsewhere" in complete(script, "ecrctl", "refund", "counter-1", "--e")
    assert complete(script, "ecrctl", "trace", "--tail", "5", "t1", "o") == ["on", "off"]
    (tmp_path / "journal.sqlite3").write_text("")
    assert complete(script, "ecrctl", "backup", f"{tmp_path}/jo") == [f"{tmp_path}/journal.sqlite3"]
    daemon = str(bash_files / "ecrd")
    assert sorted(complete(daemon, "ecrd", "")) == ["check-config", "run"]
    assert complete(daemon, "ecrd", "check-config", "-") == ["-h", "--help", "--config", "-c"]


def test_zsh_completions_parse_and_list_every_command(
    files: dict[str, str], tmp_path: Path
) -> None:
    for program, parser in PARSERS.items():
        text = files[f"zsh/vendor-completions/_{program}"]
        assert text.startswith(f"#compdef {program}\n")
        for name in subparsers(parser()):
            assert f"        ({name})\n" in text
    if shutil.which("zsh") is None:
        pytest.skip("needs zsh to check the syntax")
    for program in PARSERS:
        path = tmp_path / f"_{program}"
        path.write_text(files[f"zsh/vendor-completions/_{program}"])
        subprocess.run(["zsh", "-n", str(path)], check=True)


def test_the_module_writes_every_file(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ecrd.docgen",
            str(tmp_path),
            "--example",
            str(ROOT / "etc/ecrd.toml"),
        ],
        check=True,
        env={"SOURCE_DATE_EPOCH": "1764720000", "PATH": "/usr/bin:/bin"},
    )
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(pages(EXAMPLE, DATE))
    assert '"2025-12-03"' in (tmp_path / "man/man8/ecrd.8").read_text()


def test_zsh_and_bash_quote_descriptions() -> None:
    arg = model.Argument(name="X", flags=("--x",), help="it's [odd]: yes")
    [spec] = completion._zsh_specs("_p", (arg,))
    assert spec == "'--x=[it'\\''s \\[odd\\]\\: yes]:x: '"
    assert (
        man.usage(model.Command("p s", "", "", "", False, (arg,))) == "\\fBs\\fR [\\fIoptions\\fR]"
    )
