"""The `ragway` command line: a client of a running ragway over HTTP."""
