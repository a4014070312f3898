"""Shared pytest set-up. Fixtures for real servers live in tests/support/ and are registered here."""

pytest_plugins = ["tests.support.keycloak", "tests.support.kube", "tests.support.synapse"]
