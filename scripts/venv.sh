# Sourced by scripts/test, scripts/demo and bench/run: create or refresh .venv with the
# project and its test and bench extras, at the versions requirements-dev.lock pins
# (scripts/lock makes it): a clean clone tests with the tools its commit was tested with,
# not with whatever the index has that day. Re-installs only when pyproject.toml, that lock
# or the version (ecrd/__init__.py) changed since the last install, so the installed
# metadata never lags behind.
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv"
    python3 -m venv "$venv"
fi
stamp="$venv/.installed-$(cat pyproject.toml requirements-dev.lock ecrd/__init__.py |
    sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    echo "== installing ecrd and its test and bench tools into $venv (first run takes a minute)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e ".[test,bench]" -c requirements-dev.lock
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi
export PATH="$PWD/$venv/bin:$PATH"
