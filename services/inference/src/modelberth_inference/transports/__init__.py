"""Transports: each decodes its wire format for the data plane and encodes the answer back."""
