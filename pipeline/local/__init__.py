"""The local stack: the real parts (Tansu, the chDB warehouse, workers, API) on one machine."""
