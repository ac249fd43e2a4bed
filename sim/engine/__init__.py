"""The simulated engine: state, phase machines and the REST API."""
