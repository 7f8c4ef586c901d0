"""Tenant context, registry, provisioning and migration fan-out. Knows nothing of Flask."""
