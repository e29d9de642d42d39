"""mcs: a Multi-Cluster Services API controller."""
