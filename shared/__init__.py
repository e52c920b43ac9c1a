"""Domain core of the Retail Intelligence Platform: no Qt, no web server, testable with pytest."""

__version__ = "0.1.0"
