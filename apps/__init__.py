"""Example apps: hello world, a stand-in backend API, and the fan-out demo."""
