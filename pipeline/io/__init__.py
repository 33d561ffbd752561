"""Output stores."""
