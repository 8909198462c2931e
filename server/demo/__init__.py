"""The demo scenario: two peers on loopback, the seeds data shipped inside the package."""
