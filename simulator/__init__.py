"""The synthetic Gaia XP × APOGEE survey simulator (docs/simulator.md).

    from simulator import generate, simulate_survey
"""
from .survey import FORMATS, SimulationSummary, generate, iter_blocks, simulate_survey

__all__ = ["generate", "simulate_survey", "iter_blocks", "SimulationSummary", "FORMATS"]
