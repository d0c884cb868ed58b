"""Fuzzing harnesses for tagdns's hostile-input surfaces (run with ``scripts/fuzz``).

``fuzz.targets`` holds one check per surface (the wire responder, the upstream
reply parser, the document parser, the hosts merger): each takes bytes and
raises only when it finds a bug. ``fuzz.run`` drives them with atheris
(coverage-guided libFuzzer) or, where atheris is missing, with the pure-Python
mutator of ``fuzz.mutate``; ``fuzz.make_corpus`` writes the seed corpus.
"""
