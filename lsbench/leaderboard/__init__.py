"""The leaderboard generator: results directories -> tables, plots and a static site.

Never imports JAX (only numpy, matplotlib and the JAX-free results schema), so
results can be published on any machine.
"""
