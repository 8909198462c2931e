"""The check: its messages, the proposer and responder sessions, and evidence."""
