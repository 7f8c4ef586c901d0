"""LLM gateway: provider client, simulator, tokens, pseudonymisation, metering and budgets."""
