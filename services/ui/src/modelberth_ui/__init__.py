"""modelberth_ui."""
