"""tagdns: names for an AWS fleet from EC2 tags, served by a small local DNS agent."""

__version__ = "0.1.0"
