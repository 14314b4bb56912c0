"""One module per dashboard, built with Grafana's Foundation SDK; common.py holds
what they share and infinity.py the Infinity query type the SDK does not ship."""
