"""LLM gateway (issue 3): provider client, metering, budgets, simulator. Not built yet."""
