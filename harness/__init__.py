"""What the tests and the benchmarks share, outside both: ``ecrd run`` and ``ecrd-sim`` as
real subprocesses (``daemon``), the one raw socket client and what a well-formed reply is
(``raw``), hostile clients (``hostile``) and the socket fuzz (``fuzz``).

It is not a test module (pytest collects nothing here) and not part of ecrd: the wheel and
the Debian package take ``ecrd*`` only, and nothing under ``ecrd/`` imports it (the
import-linter contracts in pyproject.toml say so).
"""
