"""The data plane and what it stands on: the model store, the registry of loaded versions, the
rollout policy, the shadow runner, and where work runs (inline or offloaded). Protocol-neutral:
nothing here knows HTTP, V2 or gRPC."""
