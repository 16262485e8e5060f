"""Algorithms: one file each, read top to bottom (config, networks, act, update, agent)."""
