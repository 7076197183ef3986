"""ecrd: connects point-of-sale boxes to Wonder payment terminals."""

__version__ = "0.1.0"
