"""Agents: the scripted baseline policies and all RLlib code of the project.

- :mod:`agents.baselines`: scripted policies (pure numpy) that can sit in any seat;
- :mod:`agents.schema`: typed schemas of the ``train`` config group and of ``twin-eval``
  (standard library only: the simulator's config imports it);
- :mod:`agents.env`, :mod:`agents.modules`, :mod:`agents.callbacks`,
  :mod:`agents.config_builder`: the RLlib env adapter, RLModules, episode callback and the one
  pure ``build_algo_config``;
- :mod:`agents.measures`: spec section 5 measures from a finished market (pandas only);
- :mod:`agents.stats`: the t interval of a mean over seeds (numpy and scipy only);
- :mod:`agents.train` (``twin-train``), :mod:`agents.policies` (checkpoint loading, inference
  without Ray), :mod:`agents.evaluate` (``twin-eval``);
- :mod:`agents.exploit` (``twin-exploit``, schema :mod:`agents.exploit_schema`): the best-response
  gain of deviations against a frozen population (spec section 5).

Importing this package imports neither ray nor torch; the RLlib modules do.
"""
