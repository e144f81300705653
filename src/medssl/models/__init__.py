"""Encoders, heads and the encoder file format."""
