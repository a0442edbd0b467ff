"""Storage: the SQLite database and the account repository, unit presence and the position index.

Each store sits behind a small interface with the implementations chosen in ``create_app``
(in memory on one node, Redis when several nodes share state). Stores import nothing from the
domain services or the edges.
"""
