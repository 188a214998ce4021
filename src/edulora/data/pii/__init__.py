"""The detectors behind ``edulora.data.privacy``: word lists, patterns for each kind of personal
detail, names found from cue words, and the evaluation on our own labelled message set.

``edulora.data.privacy`` is the public entry point; this package only holds its parts, so that
each stays small. (``evaluate`` imports ``privacy``; nothing is imported here to keep that one way.)
"""
