"""A federation run's experiment side, pure: the data plane of the admitted tenants, the run's
report (JSON, markdown) and its figures. The agents' loop (``agents.scenario``) drives it."""
