"""Transfer losses: small modules, each with a weight, composed by a method config."""
