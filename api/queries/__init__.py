"""Warehouse queries behind the metrics endpoints: typed arguments in, rows out.

Every value reaches SQL as a server-side bound parameter (``{name:Type}``);
identifiers come only from the whitelists defined here.
"""
