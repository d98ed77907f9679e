"""vigil: face recognition for video surveillance, with the safeguards built in."""

__version__ = "0.1.0"
