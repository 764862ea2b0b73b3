"""Contender apps for the drain benchmark, each run as its own process.

Every app reads the same pre-loaded events topic with its own consumer group (or app id)
and state dir, and writes one result JSON: wall times of process start, first event
and done, the events it consumed, and whether its totals equal the ground truth.
"""
