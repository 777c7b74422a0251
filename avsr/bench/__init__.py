"""Measurement scripts for the goals in the issues: each prints its figures and saves them as JSON."""
