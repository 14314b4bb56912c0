"""Grafana dashboards as code (dashboards/builders/) and their generated JSON."""
