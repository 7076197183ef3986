"""ecrd: connects point-of-sale boxes to Wonder payment terminals."""

# The one source of the version: the package metadata (pyproject.toml), `ecrd --version`,
# `ecrctl --version` and the API's ping/status all read it from here.
__version__ = "0.1.0"
