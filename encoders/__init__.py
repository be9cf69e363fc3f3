"""Encoders: the encoder registry, the open_clip wrapper, the offline ConSE and rehearsal encoders.

Importing the package registers every built-in encoder (cheap: weights load only when
``get_encoder`` builds one). Third-party encoders arrive through the entry-point group
``transferbench.encoders``.
"""
from . import conse, open_clip_encoder, rehearsal, smoke  # noqa: F401  (register on import)
from .base import (ENCODERS, Encoder, EncoderUnavailable, get_encoder, list_encoders,
                   register_encoder)

__all__ = ["ENCODERS", "Encoder", "EncoderUnavailable", "get_encoder", "list_encoders",
           "register_encoder"]
