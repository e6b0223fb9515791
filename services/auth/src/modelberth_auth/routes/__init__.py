"""HTTP routes of the auth service, one router per file."""
