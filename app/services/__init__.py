"""Domain operations on a session: plain keyword-only functions the API and tasks call."""
