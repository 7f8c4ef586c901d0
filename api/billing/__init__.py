"""The platform's billing read: the cross-tenant usage summary (billing principals only)."""
