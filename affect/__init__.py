"""The contract every room shares: labels, the model spec, crop geometry,
preprocessing, metrics and the recording format. No torch in here."""

__version__ = "0.1.0"
