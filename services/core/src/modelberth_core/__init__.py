"""modelberth_core."""
