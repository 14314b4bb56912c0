"""Personal data the API holds: consent, encrypted phones and their keys, erasure, audit."""
