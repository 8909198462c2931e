"""Time beside space: intervals, the epoch's time tree and space-time tokens."""
