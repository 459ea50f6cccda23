"""Action labels for action-free video: latent action models (LAM), inverse dynamics models (IDM), their
training, evaluation, and ``label apply`` (pseudo-labels written as side-cars)."""
