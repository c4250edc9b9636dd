"""Template tags of the arbook app."""
