"""Tests of the deployment artefacts: Kustomize base and overlays, Dockerfile."""
