"""Reference physics engines that generate training data for learned simulators."""

from physnet.sim.mpm import MPMWater, WaterTrajectory, simulate_water

__all__ = ["MPMWater", "WaterTrajectory", "simulate_water"]
