"""The suite runner: a preset grid of tasks x methods x sweep points x seeds,
each run in its own subprocess (``lsbench run``), resumable, with a suite.json."""
