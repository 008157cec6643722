"""nextbehavior.stream: the torch-free runtime and the wire contracts."""

__version__ = "0.1.0"
