"""Count maths shared by the generators and the metrics: scaling cells to a total, the negative binomial's
likelihood, sampling and dispersion estimates.

`scldbench.counts.numpy` works on numpy arrays and scipy sparse matrices, `scldbench.counts.torch` on tensors.
Both parametrise the negative binomial (NB) by its mean mu and either its dispersion phi (numpy: variance
mu + phi mu^2, phi = 0 a Poisson) or its inverse dispersion theta = 1 / phi (torch, as the neural models learn it).
"""
