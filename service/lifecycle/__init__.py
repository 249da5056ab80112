"""The control plane and the process: hot reload, polling, the worker group, the draining
server and the supervisor of several workers."""
