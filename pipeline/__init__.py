"""The Faust application: domain logic, agents, sinks, dispatch, replay, local stack, CLI."""
