"""modelberth_inference."""
