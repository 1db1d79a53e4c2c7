"""hlmat agents."""
