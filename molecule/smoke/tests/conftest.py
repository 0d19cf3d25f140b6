pytest_plugins = ["sse_testinfra"]
