"""Agents: scripted baseline policies (:mod:`agents.baselines`, pure numpy) and, in the training
modules, RLlib code. Importing this package imports neither ray nor torch."""
