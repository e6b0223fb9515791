"""modelberth_inference: serves the trainer's model artifacts over HTTP (V1 JSON and Open Inference V2)."""

__version__ = "0.1.0"
