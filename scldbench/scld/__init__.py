"""SCLD, single-cell latent diffusion: autoencoder -> conditional latent DDPM -> counts -> scorer.

One job per file: `config` (settings and checks), `autoencoder` (model, count likelihoods, count draws),
`schedule` (noise schedules), `denoiser` (residual U-Net-style MLP), `conditioning` (pre-guidance encoder and
fusions), `sampling` (guided DDPM / DDIM), `scorer` (post-guidance), `training` (loops), `generator` (`SCLD`).
"""
