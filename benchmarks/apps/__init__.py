"""Reference workers measured beside the real one."""
