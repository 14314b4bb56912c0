"""Thin Faust wiring: read a topic, call the engine, ship what it returns."""
