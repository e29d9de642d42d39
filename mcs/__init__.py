"""mcs: a Multi-Cluster Services API controller."""

# The one version source: pyproject.toml reads it (dynamic version), the image, `mcs --version`,
# the mcs_build_info metric and the controller's start-up log line.
__version__ = "0.2.0"
