"""Contracts shared by the pipeline and the API: event and message models, topics, DDL. No I/O."""
