"""nextbehavior.export."""
