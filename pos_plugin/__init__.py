"""pos-plugin: the pharmacy till's agent for medical-insurance personal-account payments."""

__version__ = "0.1.0"
