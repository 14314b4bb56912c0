"""Stream side of the intent engine: partition clocks, write-behind state, the processor."""
