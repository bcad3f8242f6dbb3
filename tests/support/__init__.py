"""Helpers shared by the test tiers (and bench/): the offline oracle, the reference baselines,
example output events, a local webhook, the dashboards' queries, and waiting for a condition."""
