"""Load tests against the EMRsim sim server: open-model schedules, budgets, mergeable results.

Modules: ``scenarios`` (aiohttp journeys), ``scheduler`` (open/closed model in one process),
``workers`` (processes and merging), ``budgets`` (the budget grammar), ``result`` (the
versioned result document and ``compare``), ``junit`` (CI reports), ``run`` (the entry point).
"""
