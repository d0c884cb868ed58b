"""Thin I/O shells around resolver.core: AWS, sockets, files, watchers."""
