"""Encoders: the encoder registry, the open_clip wrapper, the offline ConSE and rehearsal encoders.

The registry imports every encoder module of this package on first use (``ENCODERS``),
so importing the package, or ``encoders.cache``, loads no model code. Third-party
encoders arrive through the entry-point group ``transferbench.encoders``.
"""
from .base import (
    ENCODERS,
    Encoder,
    EncoderUnavailable,
    check_encoder_id,
    get_encoder,
    list_encoders,
    register_encoder,
    register_prefix,
)

__all__ = ["ENCODERS", "Encoder", "EncoderUnavailable", "check_encoder_id", "get_encoder", "list_encoders",
           "register_encoder", "register_prefix"]
