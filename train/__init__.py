"""Training: datasets, models, the fit loop, evaluation and reports (`python -m train`)."""
