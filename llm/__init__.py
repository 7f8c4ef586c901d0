"""LLM gateway: provider client, simulator, tokens, pseudonymisation (metering: not yet)."""
