"""Fixtures for the Kubernetes API emulator (kmock) and a tiny status controller."""
