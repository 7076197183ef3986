# Sourced by scripts/install and scripts/uninstall: arguments, progress lines, and the
# idempotent steps. Every path they take is the path on the box (/etc/ecrd/...); $root
# (empty, or the --root directory) is put in front of it here and nowhere else.
# scripts/build-deb uses the progress lines and the program from the lock files (the end).
umask 022 # the venv and the unit must be readable by the ecrd user, whatever root's umask

say() { echo "== $*"; }
die() {
    echo "$prog: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p'
    exit 0
}
usage_error() {
    echo "$prog: $* (see $0 --help)" >&2
    exit 2
}

parse_args() {
    prog="$1" root="" staged="" purge=""
    shift
    local dir=""
    while [ $# -gt 0 ]; do
        case "$1" in
        --root) [ $# -ge 2 ] || usage_error "--root needs a directory"; dir="$2" staged=yes; shift 2 ;;
        --root=*) dir="${1#--root=}" staged=yes; shift ;;
        --purge) [ "$prog" = uninstall ] || usage_error "unknown argument: $1"; purge=yes; shift ;;
        -h | --help) usage ;;
        *) usage_error "unknown argument: $1" ;;
        esac
    done
    if [ -n "$staged" ]; then
        [ -n "$dir" ] || usage_error "--root needs a directory"
        mkdir -p -- "$dir"
        root="$(cd -- "$dir" && pwd)"
        root="${root%/}"
    elif [ "$(id -u)" -ne 0 ]; then
        die "run as root (or with --root DIR to stage the files under DIR)"
    fi
}

group_exists() { getent group "$1" >/dev/null; }

# put_file MODE SOURCE PATH [GROUP]: PATH gets SOURCE's content, MODE and GROUP.
put_file() {
    local mode="$1" from="$2" path="$3" group="${4:-}" to="$root$3"
    if [ -f "$to" ] && [ ! -L "$to" ] && cmp -s "$from" "$to" \
        && [ "$(stat -c %a "$to")" = "${mode#0}" ] \
        && { [ -z "$group" ] || [ "$(stat -c %G "$to")" = "$group" ]; }; then
        say "$path: unchanged"
        return
    fi
    mkdir -p -- "$(dirname "$to")"
    install -m "$mode" ${group:+-g "$group"} -- "$from" "$to"
    say "$path: installed (mode $mode${group:+, group $group})"
}

# put_dir MODE PATH [GROUP]
put_dir() {
    local mode="$1" path="$2" group="${3:-}" to="$root$2"
    if [ -d "$to" ] && [ "$(stat -c %a "$to")" = "${mode#0}" ] \
        && { [ -z "$group" ] || [ "$(stat -c %G "$to")" = "$group" ]; }; then
        say "$path/: unchanged"
        return
    fi
    mkdir -p -- "$to"
    chmod "$mode" -- "$to"
    [ -z "$group" ] || chgrp "$group" -- "$to"
    say "$path/: mode $mode${group:+, group $group}"
}

# put_link TARGET PATH: PATH is a symbolic link to TARGET (a path on the box).
put_link() {
    local target="$1" path="$2" to="$root$2"
    if [ -L "$to" ] && [ "$(readlink -- "$to")" = "$target" ]; then
        say "$path -> $target: unchanged"
        return
    fi
    if [ -e "$to" ] && [ ! -L "$to" ]; then
        die "$path exists and is not a link: not replaced; remove it, then run $prog again"
    fi
    mkdir -p -- "$(dirname "$to")"
    ln -sfn -- "$target" "$to"
    say "$path -> $target: linked"
}

# The program from the lock files (scripts/lock): ecrd's own wheel, built by the locked
# setuptools, and every dependency pinned in requirements.lock, each download checked
# against its hash. Nothing is resolved here, so two boxes installed a week apart run the
# same code. Callers use them as `build_wheel ... || die ...` (see set -e in bash(1)).
pip_args=(--quiet --disable-pip-version-check --no-input)

# build_wheel PYTHON DIR: ecrd's wheel into DIR, from a clean copy of the sources in $src.
# PYTHON has pip (the venv being filled); the build backend, exactly what
# requirements-build.lock pins, goes into a throwaway directory on PYTHONPATH for the build
# alone (no build isolation, so no unpinned backend is fetched, and no second venv is made).
build_wheel() {
    local python="$1" out="$2" work status
    work="$(mktemp -d)"
    mkdir "$work/src"
    "$python" -m pip install "${pip_args[@]}" --require-hashes --no-deps --only-binary :all: \
        --no-compile --target "$work/backend" -r "$src/requirements-build.lock" &&
        (cd "$src" && tar -cf - --exclude=__pycache__ --exclude='*.egg-info' \
            pyproject.toml README.md LICENSE ecrd) | tar -xf - -C "$work/src" &&
        PYTHONPATH="$work/backend" "$python" -m pip wheel "${pip_args[@]}" \
            --no-build-isolation --no-deps -w "$out" "$work/src"
    status=$?
    rm -rf "$work"
    return "$status"
}

# install_locked VENV WHEEL [PIP OPTION...]: requirements.lock, then ecrd's WHEEL, into VENV.
install_locked() {
    local venv="$1" wheel="$2"
    shift 2
    "$venv/bin/python" -m pip install "${pip_args[@]}" --require-hashes --no-deps \
        --only-binary :all: "$@" -r "$src/requirements.lock" &&
        "$venv/bin/python" -m pip install "${pip_args[@]}" --no-deps --no-index \
            --force-reinstall "$@" "$wheel" &&
        "$venv/bin/python" -m pip check --quiet >/dev/null
}
