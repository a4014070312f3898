"""Local stand-ins for the outside world (Synapse, a Kubernetes API) used by `toggler demo` and the tests."""
