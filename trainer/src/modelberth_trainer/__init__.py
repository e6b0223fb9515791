"""modelberth_trainer."""
