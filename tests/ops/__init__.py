"""Tests of what operators deploy beside the controller (alert rules, the image); they
need tools built or installed first (promtool from its Go module, mmdebstrap/umoci)."""
