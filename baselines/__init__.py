"""Generators that scldbench compares SCLD against: controls, statistical simulators, GANs and VAEs."""
