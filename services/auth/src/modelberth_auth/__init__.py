"""modelberth_auth."""
