"""Pure logic of tagdns: no sockets, no boto3, no watchdog, no file I/O.

Everything here takes values and returns values, so it can be tested exhaustively
and reused by every adapter. tests/core/test_purity.py enforces the rule.
"""
