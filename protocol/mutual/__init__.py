"""Mutual proximity: its messages, the blinded sets and the two sessions."""
