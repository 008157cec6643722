"""nextbehavior.model."""
