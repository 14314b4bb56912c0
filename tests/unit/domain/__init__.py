"""Unit tests of the pure intent domain (pipeline/domain): journeys, properties, rules."""
