"""One module per `make bench` scenario; each has `run(harness, settings) -> Result`."""
